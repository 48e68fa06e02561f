"""The supervisor: N worker processes per service, respawned when they die.

The seed's Node ``cluster`` done with processes and a broker: each worker is its own
``python -m services.<name>`` with ``DOVECOTE_INSTANCE`` set, so its MQTT client id (and
persistent session) is stable across restarts. Lines a worker prints are prefixed with
``<service>.<instance> |``. A worker that dies is restarted with backoff; a service whose
workers cannot start at all (they keep dying within seconds) stops the whole run with a
non-zero exit. On SIGINT/SIGTERM/SIGHUP the gateway stops first (no new browser commands),
then the other services all at once, each given time to finish what it holds; a second
signal during that stop kills what is left at once.

Workers never outlive the supervisor: each watches a pipe from it (``dovecote.lifeline``)
and stops when it closes, which happens however the supervisor dies, ``kill -9`` included.
Workers also inherit ``keep_fds`` (the run lock, ``dovecote.tools.runlock``), so a folder
stays locked until the last process of its federation has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dovecote import instance, lifeline
from dovecote.project import PROJECT
from dovecote.tools import manifest

STOP_TIMEOUT = 10.0
HEALTHY_AFTER = 10.0  # a worker up this long is fine; its next crash restarts the backoff
GIVE_UP_AFTER = 5  # this many consecutive quick deaths: the service cannot start
COLORS = [36, 33, 35, 32, 34, 91, 96, 93]


def discover() -> list[str]:
    """Every service of the federation's manifest (``dovecote.tools.manifest``)."""
    found = manifest.load().names()
    # The gateway starts last and stops first: the dashboard appears when the rest is up.
    return [s for s in found if s != "gateway"] + [s for s in found if s == "gateway"]


def parse_plan(args: list[str], known: list[str]) -> dict[str, int]:
    """``["builder", "resizer=3"]`` -> {"builder": 1, "resizer": 3}; empty: everything once."""
    if not args:
        return dict.fromkeys(known, 1)
    plan: dict[str, int] = {}
    for arg in args:
        name, _, count = arg.partition("=")
        if name not in known:
            raise ValueError(f"unknown service {name!r}; known: {', '.join(known)}")
        try:
            n = int(count) if count else 1
        except ValueError:
            raise ValueError(f"bad worker count in {arg!r}") from None
        if not 1 <= n <= 64:
            raise ValueError(f"worker count for {name} must be 1-64, got {n}")
        plan[name] = n
    return {s: plan[s] for s in known if s in plan}


@dataclass
class Worker:
    service: str
    instance: str
    color: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restarts: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.service}.{self.instance}"


class Supervisor:
    def __init__(
        self,
        plan: Mapping[str, int],
        env: Mapping[str, str],
        say: Callable[[str], None] | None = None,
        color: bool | None = None,
        package: str = "",
        handle_signals: bool = True,
        keep_fds: tuple[int, ...] = (),
        on_spawn: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.env = dict(env)
        # Workers run as ``python -m <package>.<service>``; the manifest's by default.
        self.package = package or manifest.package()
        self.handle_signals = handle_signals
        self.color = sys.stdout.isatty() if color is None else color
        # DOVECOTE_INSTANCE=auto: <machine>-<n>, unique across machines (dovecote.instance).
        prefix = ""
        if self.env.get("DOVECOTE_INSTANCE", "").strip() == instance.AUTO:
            prefix = f"{instance.machine_name(self.env)}-"
        self.workers = [
            Worker(service, f"{prefix}{i + 1}", COLORS[n % len(COLORS)])
            for n, (service, count) in enumerate(plan.items())
            for i in range(count)
        ]
        width = max((len(w.label) for w in self.workers), default=8)
        self._width = max(width, 10)
        self._say = say or (lambda line: print(line, flush=True))
        self.keep_fds = keep_fds  # inherited by every worker (the run lock)
        self.on_spawn = on_spawn  # told every worker's pid after each start (the run lock)
        self.stopping = asyncio.Event()
        self.failed: str | None = None
        self._spawning = asyncio.Lock()  # a stop waits for a start in progress
        self._lifeline: int | None = None  # the read end every worker inherits

    def say(self, text: str, worker: Worker | None = None) -> None:
        label = (worker.label if worker else "dovecote").ljust(self._width)
        if self.color:
            code = worker.color if worker else 1
            label = f"\x1b[{code}m{label}\x1b[0m"
        with contextlib.suppress(OSError):  # the terminal closed (SIGHUP): stop all the same
            self._say(f"{label} | {text}")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        read_end, write_end = lifeline.open_pipe()  # the write end dies with us, however
        self._lifeline = read_end
        if self.handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self._signalled)
        try:
            for w in self.workers:
                await self._spawn(w)
            watchers = [loop.create_task(self._watch(w)) for w in self.workers]
            await self.stopping.wait()
            await self._stop_all()
            for t in watchers:
                t.cancel()
        finally:
            os.close(read_end)
            os.close(write_end)
        if self.failed:
            self.say(self.failed)
            return 1
        return 0

    def _signalled(self) -> None:
        if not self.stopping.is_set():
            self.stopping.set()
            return
        # A second Ctrl-C while stopping: the person will not wait. Nothing stays behind.
        left = [w for w in self.workers if w.process and w.process.returncode is None]
        self.say(f"stopping now: killing {len(left)} worker(s)")
        for w in left:
            assert w.process is not None
            with contextlib.suppress(ProcessLookupError):
                w.process.kill()

    async def _spawn(self, w: Worker) -> None:
        async with self._spawning:
            if self.stopping.is_set():
                return  # stopping: a worker started now would be missed by the stop
            await self._start(w)
        if self.on_spawn is not None:
            self.on_spawn({o.label: o.process.pid for o in self.workers if o.process is not None})

    async def _start(self, w: Worker) -> None:
        assert self._lifeline is not None
        size = sum(1 for o in self.workers if o.service == w.service)
        env = {
            **self.env,
            "DOVECOTE_INSTANCE": w.instance,
            "DOVECOTE_POOL_SIZE": str(size),  # 1: plain subscriptions (shared/dovecote/pool.py)
            lifeline.ENV: str(self._lifeline),
            "PYTHONUNBUFFERED": "1",
        }
        w.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"{self.package}.{w.service}",
            cwd=PROJECT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop workers in order
            pass_fds=(self._lifeline, *self.keep_fds),
        )
        w.started = time.monotonic()
        assert w.process.stdout is not None
        w.tasks = [asyncio.get_running_loop().create_task(self._pipe(w, w.process.stdout))]

    async def _pipe(self, w: Worker, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.say(line.decode(errors="replace").rstrip(), w)

    async def _watch(self, w: Worker) -> None:
        delay = 0.5
        while not self.stopping.is_set():
            assert w.process is not None
            code = await w.process.wait()
            for t in w.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if self.stopping.is_set():
                return
            lived = time.monotonic() - w.started
            if lived >= HEALTHY_AFTER:
                w.quick_deaths, delay = 0, 0.5
            else:
                w.quick_deaths += 1
            if code == 2 or w.quick_deaths >= GIVE_UP_AFTER:
                why = "configuration error" if code == 2 else f"died {w.quick_deaths} times"
                self.failed = f"{w.label} cannot start ({why}, exit code {code}); stopping all"
                self.stopping.set()
                return
            w.restarts += 1
            self.say(
                f"died with exit code {code} after {lived:.1f} s; "
                f"starting a new one in {delay:.1f} s (restart #{w.restarts})",
                w,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            if self.stopping.is_set():
                return
            await self._spawn(w)

    async def _stop_all(self) -> None:
        """Gateway first (no new browser commands), then every other worker at once.

        At once, not one after the other: a worker in the middle of its handlers may take
        seconds (up to 5 for its handlers, 5 for the broker's acks), and one after the other
        those seconds added up past what a person or systemd waits after SIGTERM.
        """
        async with self._spawning:  # a start in progress ends first; none begins after
            pass
        gateways = [w for w in self.workers if w.service == "gateway"]
        others = [w for w in self.workers if w.service != "gateway"]
        for group in (gateways, others):
            await asyncio.gather(*(self._stop(w) for w in reversed(group)))

    async def _stop(self, w: Worker) -> None:
        p = w.process
        if p is None or p.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(p.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.say(f"did not stop in {STOP_TIMEOUT:.0f} s; killing", w)
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            await p.wait()
        for t in w.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
