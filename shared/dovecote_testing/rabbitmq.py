"""A private RabbitMQ node with the MQTT plugin, for tests and benchmarks.

Started from the project's own files (``deploy/rabbitmq/dev.conf``, ``enabled_plugins``) on
free loopback ports, isolated from any node the machine runs (docs/brokers.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

from dovecote.project import PROJECT
from dovecote.tools.broker import BrokerUnavailable, free_port, mqtt_answers

RABBITMQ_DIR = PROJECT / "deploy" / "rabbitmq"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # not /usr/sbin's user-switching wrapper


class RabbitmqctlError(subprocess.CalledProcessError):
    """A failed ``rabbitmqctl``, with what it printed."""

    def __str__(self) -> str:
        said = (self.stderr or self.stdout or "").strip()
        return f"{super().__str__()}: {said[-2000:]}"


@dataclass
class PrivateRabbitMQ:
    """A RabbitMQ node of our own with the MQTT plugin, on free loopback ports.

    Configured by the project's files (``deploy/rabbitmq/dev.conf`` and ``enabled_plugins``)
    and isolated from the machine's own node: its own node name, epmd, distribution ports,
    data and log folders (docs/brokers.md). First boot takes ~10-20 s.
    """

    kind: ClassVar[str] = "rabbitmq"
    directory: Path
    host: str = "127.0.0.1"
    port: int = 0
    ws_port: int = 0
    amqp_port: int = 0
    name: str = ""
    # A cluster's nodes share one epmd (they find each other through it) and one cookie;
    # a lone node starts its own epmd on a port of its own.
    epmd_port: int = 0
    own_epmd: bool = True
    cookie: str = ""
    extra_config: str = ""  # lines appended to dev.conf (a cluster node's settings)
    dist_port: int = 0
    ctl_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    epmd: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{self.host}:{self.amqp_port}/%2F"

    @property
    def log_file(self) -> Path:
        return self.directory / "stdout.log"

    @staticmethod
    def available() -> bool:
        return os.access(RABBITMQ_SERVER, os.X_OK) and shutil.which("epmd") is not None

    def write_config(self) -> None:
        d = self.directory
        for sub in ("home", "mnesia", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.host)
        self.ws_port = self.ws_port or free_port(self.host)
        self.amqp_port = self.amqp_port or free_port(self.host)
        self.name = self.name or f"dovecote-{self.port}@localhost"
        conf = (RABBITMQ_DIR / "dev.conf").read_text()
        for key, value in {
            "@HOST@": self.host,
            "@PORT@": str(self.port),
            "@WS_PORT@": str(self.ws_port),
            "@AMQP_PORT@": str(self.amqp_port),
        }.items():
            conf = conf.replace(key, value)
        if self.extra_config:
            conf += "\n" + self.extra_config.strip() + "\n"
        (d / "rabbitmq.conf").write_text(conf)
        shutil.copy(RABBITMQ_DIR / "enabled_plugins", d / "enabled_plugins")
        if self.cookie:  # the shared secret of a cluster's nodes (and of rabbitmqctl)
            cookie = d / "home" / ".erlang.cookie"
            cookie.unlink(missing_ok=True)
            cookie.write_text(self.cookie)
            cookie.chmod(0o400)
        # Chosen once: a node started again after a kill keeps its ports and its data.
        self.epmd_port = self.epmd_port or free_port()
        self.dist_port = self.dist_port or free_port()
        self.ctl_port = self.ctl_port or free_port()
        epmd_port, dist_port, ctl_port = self.epmd_port, self.dist_port, self.ctl_port
        self.env = {
            **os.environ,
            "HOME": str(d / "home"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": self.host,
            "RABBITMQ_CTL_DIST_PORT_MIN": str(ctl_port),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(ctl_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "rabbit.pid"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            # Without this, the distribution port listens on every interface (docs/brokers.md).
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            # rabbitmqctl's own Erlang VM, as the node's: schedulers that sleep when idle
            # instead of spinning (~0.2 s of CPU less a call; the tests make ~50 calls).
            "RABBITMQ_CTL_ERL_ARGS": "+sbwt none +sbwtdcpu none +sbwtdio none",
        }

    def start(self, timeout: float = 90.0) -> PrivateRabbitMQ:
        self.launch()
        self.wait_mqtt(timeout)
        return self

    def launch(self) -> None:
        """Start the node and return at once (a cluster boots its nodes side by side)."""
        if not self.available():
            raise BrokerUnavailable(
                "RabbitMQ is not installed: sudo apt-get install -y rabbitmq-server"
            )
        self.write_config()
        out = self.log_file.open("ab")
        # Our own epmd, so the node never registers with (or starts) the machine's.
        if self.own_epmd:
            self.epmd = start_epmd(self.epmd_port, self.host, self.env, out)
            wait_epmd(self.host, self.epmd_port)
        self.process = subprocess.Popen(
            [RABBITMQ_SERVER],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Erlang writes crash dumps (MnesiaCore.*) into its working folder: the node's own.
            cwd=self.directory,
        )
        out.close()

    def wait_mqtt(self, timeout: float = 90.0) -> None:
        """Until the node answers MQTT; stopped, with its log's end, if it cannot."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise BrokerUnavailable(
                    f"rabbitmq exited at start: {self.log_file.read_text(errors='replace')[-3000:]}"
                )
            if mqtt_answers(self.host, self.port, 0.5):
                return
            time.sleep(0.2)
        self.stop()
        raise BrokerUnavailable(f"rabbitmq did not answer MQTT on port {self.port} in {timeout} s")

    def rabbitmqctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl`` against this node (not the machine's); a failure says what
        rabbitmqctl printed (its exit code alone, e.g. 78, says little)."""
        try:
            done = subprocess.run(
                ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.name, *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
            )
        except subprocess.CalledProcessError as exc:
            raise RabbitmqctlError(exc.returncode, exc.cmd, exc.stdout, exc.stderr) from None
        return done.stdout

    def kill(self) -> None:
        """kill -9 of the node (every process of its group): no goodbye, no flush."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def ended(self) -> int | None:
        """None while the node runs; else its start script's exit code (reaped), and what
        is left of the node is killed: its Erlang VM runs on when only the script was
        killed (a ``kill -9`` of the pid ``status`` shows), holding the node's name and
        ports. A node is all there or all gone."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is not None:
            _kill_group(self.process.pid)
        return code

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: the start script turns SIGTERM into a clean node shutdown."""
        for proc in (self.process, self.epmd):
            if proc is None:
                continue
            if proc.poll() is not None:
                _kill_group(proc.pid)  # its leader gone, a member may not be
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.own_epmd and self.epmd_port:
            kill_epmd(self.epmd_port, self.env)

    @property
    def running(self) -> bool:
        return self.ended() is None and self.process is not None


def _kill_group(pgid: int) -> None:
    """SIGKILL to what is left of a process group whose leader (ours, reaped) has ended."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def start_epmd(
    port: int, host: str, env: dict[str, str], out: IO[bytes] | int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """An Erlang port mapper of our own on loopback, never the machine's. Wait for it
    (``wait_epmd``) before starting a node: a node that finds no epmd on its port starts
    one itself, as a daemon no one stops."""
    return subprocess.Popen(
        ["epmd", "-port", str(port), "-address", host],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_epmd(host: str, port: int, timeout: float = 10.0) -> None:
    """Until the epmd on ``port`` accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"epmd did not listen on port {port}: {exc}") from None
            time.sleep(0.05)


def kill_epmd(port: int, env: dict[str, str]) -> None:
    """Ask whatever epmd still listens on ``port`` to exit (one a node started itself, had
    ours not been up in time): nothing of ours outlives a stop."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["epmd", "-port", str(port), "-kill"],
            env=env,
            capture_output=True,
            timeout=10,
        )
