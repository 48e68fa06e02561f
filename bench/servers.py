"""The websocket servers a bench runs side by side: Dovecote's gateway and the Node peers.

Each runs as its own process(es), so its CPU time and memory can be read from ``/proc``:
the figure to compare is the server's own CPU per delivered message, under the same load.
The peers (``bench/peers/``) are installed from the npm registry on first use, into
``bench/peers/node_modules``; Dovecote itself never needs Node.js.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from dovecote.project import PROJECT
from dovecote.tools.broker import free_port

PEERS = Path(__file__).parent / "peers"
TICK = os.sysconf("SC_CLK_TCK")
PEER_KINDS = {"socketio": "socket.io 4 + mqtt.js (seed)", "ws": "Node ws + mqtt.js"}


class PeersUnavailable(RuntimeError):
    """Node.js or npm is missing, or the install failed; ``str()`` says what to do."""


def install_peers() -> str:
    """``npm ci`` into bench/peers/node_modules when missing or stale. Returns node's version."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise PeersUnavailable(
            "Node.js and npm are needed for the peer reference (socket.io, ws) and are not "
            "installed: `sudo apt-get install -y nodejs npm`. Dovecote's own figures follow."
        )
    stamp = PEERS / "node_modules" / ".package-lock.json"
    lock = PEERS / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        print("  installing the Node.js peers (npm ci in bench/peers) ...", flush=True)
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=PEERS,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise PeersUnavailable(f"npm ci in {PEERS} failed:\n{done.stderr[-2000:]}")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return version.stdout.strip()


@dataclass
class Server:
    name: str
    ws_url: str
    engineio: bool
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    data_dir: str | None = None  # removed when it stops

    def cpu_each(self) -> list[float]:
        """utime + stime of each process of this server (seconds), from /proc/<pid>/stat."""
        seconds = []
        for p in self.processes:
            stat = Path(f"/proc/{p.pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            seconds.append((int(fields[11]) + int(fields[12])) / TICK)  # stat(5) fields 14, 15
        return seconds

    def rss_bytes(self) -> int:
        total = 0
        for p in self.processes:
            for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    async def stop(self) -> None:
        for p in self.processes:
            if p.returncode is None:
                p.terminate()
        for p in self.processes:
            try:
                await asyncio.wait_for(p.wait(), 10)
            except TimeoutError:
                p.kill()
                await p.wait()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


async def wait_http(url: str, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


async def start_dovecote(
    broker_url: str,
    root: str,
    workers: int = 1,
    gc_log: str | None = None,
    module: str = "services.gateway",
    extra_env: dict[str, str] | None = None,
) -> Server:
    """``workers`` gateway processes sharing one port (SO_REUSEPORT), as `dovecote run`.
    ``gc_log``: their full garbage collections timed into that file (``bench.gc_watch``).
    ``module``: what each process runs (``bench.memory_probe``: the gateway, probed)."""
    watch = ["-m", "bench.gc_watch", gc_log] if gc_log else []
    port = free_port()
    server = Server(
        "Dovecote" if workers == 1 else f"Dovecote ×{workers}",
        f"ws://127.0.0.1:{port}/ws",
        engineio=False,
    )
    session_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    data_dir = server.data_dir = tempfile.mkdtemp(prefix="dovecote-bench-gateway-")
    for instance in range(1, workers + 1):
        env = {
            **os.environ,
            "MQTT_URL": broker_url,
            "DOVECOTE_ROOT": root,
            "DOVECOTE_INSTANCE": str(instance),
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "DOVECOTE_SERVICE_TOKEN": "bench",  # else a warning per start (uploads unused)
            # The host its sockets are opened on (any other is refused), a session key (the
            # sockets are signed out: the frames for everyone) and its stores out of the way.
            "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DOVECOTE_SESSION_KEY": session_key,
            "DOVECOTE_DATA_DIR": data_dir,
            **(extra_env or {}),
        }
        server.processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                *(watch or ["-m"]),
                module,
                cwd=PROJECT,
                env=env,
            )
        )
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
    except BaseException:
        await server.stop()  # not left serving a broker that is about to go
        raise
    return server


async def start_peer(kind: str, broker_url: str, root: str) -> Server:
    port = free_port()
    env = {**os.environ, "MQTT_URL": broker_url, "ROOT": root, "PORT": str(port), "KIND": kind}
    process = await asyncio.create_subprocess_exec(
        "node", str(PEERS / "server.js"), cwd=PEERS, env=env, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if line.strip() != b"ready":
        raise RuntimeError(f"the {kind} peer did not start: {line!r}")
    path = "/socket.io/?EIO=4&transport=websocket" if kind == "socketio" else "/ws"
    return Server(PEER_KINDS[kind], f"ws://127.0.0.1:{port}{path}", kind == "socketio", [process])
