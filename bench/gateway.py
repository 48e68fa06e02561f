"""The gateway at scale, side by side with the seed's Node.js stack, in one run.

- Fan-out: N = 100 and 1000 sockets over several load processes, all on the build stream.
  The publish rate rises step by step (targets in deliveries/s); a step holds when p99
  publish -> client latency < 100 ms, >= 99 % of the frames arrived and no socket was
  closed. Per step: delivered msgs/s and the server's CPU time per delivered message
  (utime + stime from /proc around the step): the figure to compare.
- Idle: RSS per connection with 10,000 idle sockets on one server process.
- 2 gateway workers sharing one port (SO_REUSEPORT) against 1, at N = 1000.
- The same against Node.js peers (bench/peers/): socket.io 4 + mqtt.js, and bare `ws`.
"""

from __future__ import annotations

import asyncio
import os
import resource
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.common import heading, private_broker
from bench.fleet import Fleet, Publisher, Tally
from bench.servers import PeersUnavailable, Server, install_peers, start_dovecote, start_peer

LOADERS = 4
SIZES = (100, 1000)
STEP_SECONDS = float(os.environ.get("BENCH_STEP_SECONDS", "3"))
GRACE = 0.5  # seconds after the last publish for the last frames to arrive
TARGETS = (5_000, 10_000, 20_000, 30_000, 40_000, 60_000, 80_000, 120_000)  # deliveries/s
REFERENCE = 20_000  # deliveries/s where CPU per delivery is compared (docs/performance.md's point)
IDLE = int(os.environ.get("BENCH_IDLE_SOCKETS", "10000"))
P99_LIMIT_MS = 100.0
ATTEMPTS = 2  # tries of a step before it counts as failed

Start = Callable[[str, str], Awaitable[Server]]


@dataclass
class Step:
    n: int  # sockets
    target: int  # deliveries/s asked for
    rate: float  # messages/s published
    sent: int
    frames: int
    closed: int
    p50: float
    p99: float
    cpu_each: list[float]  # CPU seconds of each server process during the step
    seconds: float  # of publishing

    @property
    def cpu(self) -> float:
        return sum(self.cpu_each)

    @property
    def busy(self) -> float:
        """The server's CPU use during the step, in cores."""
        return self.cpu / (self.seconds + GRACE)

    @property
    def expected(self) -> int:
        return self.sent * self.n

    @property
    def held(self) -> bool:
        return self.closed == 0 and self.frames >= 0.99 * self.expected and self.p99 < P99_LIMIT_MS

    @property
    def delivered_per_s(self) -> float:
        return self.frames / self.seconds

    @property
    def us_per_delivery(self) -> float:
        return self.cpu / self.frames * 1e6 if self.frames else float("nan")


async def run_step(
    server: Server,
    fleet: Fleet,
    pub: Publisher,
    n: int,
    step: int,
    target: int,
    seconds: float = STEP_SECONDS,
) -> Step:
    rate = target / n
    await fleet.step(step)
    before = server.cpu_each()
    sent = await pub.run(step, rate, seconds)
    await asyncio.sleep(GRACE)
    cpu_each = [after - b for after, b in zip(server.cpu_each(), before, strict=True)]
    tally: Tally = await fleet.report()
    return Step(
        n,
        target,
        rate,
        sent,
        tally.frames,
        tally.closed,
        tally.percentile(50),
        tally.percentile(99),
        cpu_each,
        seconds,
    )


async def ladder(server: Server, pub: Publisher, n: int) -> list[Step]:
    """Raise the rate step by step, after a warm-up (Node's JIT, everyone's caches).

    This machine is shared, so one stall fails a step's p99: a failing step gets a second
    try, and the ladder ends only when two targets in a row fail (every target up to
    REFERENCE is run regardless, so CPU per delivery is always compared at the same load).
    """
    fleet = await Fleet.open(server.ws_url, n, LOADERS, server.engineio)
    steps: list[Step] = []
    attempts = failed = 0
    try:
        await run_step(server, fleet, pub, n, 0, TARGETS[0], seconds=1.0)  # warm-up
        for target in TARGETS:
            for _ in range(ATTEMPTS):
                attempts += 1
                step = await run_step(server, fleet, pub, n, attempts, target)
                if step.held or step.closed:
                    break
            steps.append(step)
            failed = 0 if step.held else failed + 1
            if step.closed or (failed == 2 and target >= REFERENCE):
                break  # (sockets closed: the fleet is no longer N)
    finally:
        await fleet.close()
    return steps


async def idle_rss(server: Server) -> float:
    """Bytes of server RSS per idle connection: 10,000 on top of 200 already open."""
    warm = await Fleet.open(server.ws_url, 200, 1, server.engineio)
    try:
        await asyncio.sleep(1.0)
        before = server.rss_bytes()
        fleet = await Fleet.open(server.ws_url, IDLE, LOADERS, server.engineio)
        try:
            await asyncio.sleep(2.0)
            after = server.rss_bytes()
        finally:
            await fleet.close()
    finally:
        await warm.close()
    return (after - before) / IDLE


def raise_file_limit() -> int:
    """Enough descriptors for 10,000 sockets on each end (children inherit the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def with_server(
    start: Start, broker_url: str, workers: int, job: Callable[[Server, Publisher], Awaitable[Any]]
) -> Any:
    root = f"bg{uuid.uuid4().hex[:6]}"
    pub = Publisher(broker_url, root)
    await pub.start()
    server = await start(broker_url, root)
    try:
        if server.name.startswith("Dovecote"):
            await pub.wait_gateways(workers)
        return await job(server, pub)
    finally:
        await server.stop()
        await pub.stop()


def dovecote(workers: int) -> Start:
    async def start(url: str, root: str) -> Server:
        return await start_dovecote(url, root, workers)

    return start


def peer(kind: str) -> Start:
    async def start(url: str, root: str) -> Server:
        return await start_peer(kind, url, root)

    return start


async def measure() -> dict[str, Any]:
    limit = raise_file_limit()
    notes = []
    if limit < IDLE + 2000:
        notes.append(f"file limit {limit} is below {IDLE + 2000}: idle test skipped")
    starts: dict[str, tuple[Start, int]] = {"Dovecote": (dovecote(1), 1)}
    try:
        version = install_peers()
        starts["socket.io"] = (peer("socketio"), 1)
        starts["ws"] = (peer("ws"), 1)
        notes.append(f"peers on Node.js {version}")
    except PeersUnavailable as exc:
        notes.append(f"PEERS SKIPPED: {exc}")
    fanout: dict[int, dict[str, list[Step]]] = {n: {} for n in SIZES}
    idle: dict[str, float] = {}
    with private_broker() as broker:
        for n in SIZES:
            for name, (start, workers) in starts.items():

                async def job(server: Server, pub: Publisher, n: int = n) -> list[Step]:
                    return await ladder(server, pub, n)

                fanout[n][name] = await with_server(start, broker.url, workers, job)
        fanout[SIZES[-1]]["Dovecote ×2"] = await with_server(
            dovecote(2), broker.url, 2, lambda s, p: ladder(s, p, SIZES[-1])
        )

        if limit >= IDLE + 2000:
            for name, (start, workers) in starts.items():
                idle[name] = await with_server(start, broker.url, workers, lambda s, p: idle_rss(s))
    return {"fanout": fanout, "idle": idle, "notes": notes}


def best(steps: list[Step]) -> Step | None:
    held = [s for s in steps if s.held]
    return max(held, key=lambda s: s.target) if held else None


def at(steps: list[Step], target: int) -> Step | None:
    return next((s for s in steps if s.target == target), None)


def cell(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "-"


def ratio(mine: float | None, theirs: float | None) -> str:
    return f"{mine / theirs:.2f}x" if mine and theirs else "-"


def report(r: dict[str, Any]) -> None:
    fanout: dict[int, dict[str, list[Step]]] = r["fanout"]
    heading(
        f"Gateway fan-out: {LOADERS} load processes, {STEP_SECONDS:g} s steps; "
        f"held = p99 < {P99_LIMIT_MS:g} ms, >= 99 % delivered, no socket closed"
    )
    for note in r["notes"]:
        print(f"  {note}")
    for n, servers in fanout.items():
        print(f"  N = {n} sockets")
        print(
            f"    {'server':12} {'msg/s':>7} {'deliv/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'us CPU/deliv':>12} {'busy':>5}  held"
        )
        for name, steps in servers.items():
            for s in steps:
                print(
                    f"    {name:12} {s.rate:7.0f} {s.delivered_per_s:8.0f} {s.p50:7.1f} "
                    f"{s.p99:7.1f} {s.us_per_delivery:12.1f} {s.busy:5.0%}  "
                    f"{'yes' if s.held else 'NO'}" + (f" ({s.closed} closed)" if s.closed else "")
                )

    names = list(fanout[SIZES[0]])
    heading("Gateway summary, one run (Dovecote as a ratio to each peer)")
    print(
        f"  {'':34}"
        + "".join(f"{n:>11}" for n in names)
        + "".join(f"{'vs ' + n:>14}" for n in names[1:])
    )

    def row(label: str, values: dict[str, float | None], fmt: str, goal: str = "") -> None:
        mine = values.get("Dovecote")
        print(
            f"  {label:34}"
            + "".join(f"{cell(values.get(n), fmt):>11}" for n in names)
            + "".join(f"{ratio(mine, values.get(n)):>14}" for n in names[1:])
            + (f"   {goal}" if goal else "")
        )

    for n, servers in fanout.items():
        tops = {name: best(steps) for name, steps in servers.items()}
        refs = {name: at(steps, REFERENCE) for name, steps in servers.items()}
        row(
            f"N={n}: max held msg/s",
            {k: s.rate if s else None for k, s in tops.items()},
            ",.0f",
        )
        row(
            f"N={n}: max held deliveries/s",
            {k: s.delivered_per_s if s else None for k, s in tops.items()},
            ",.0f",
        )
        row(
            f"N={n}: us CPU/delivery @{REFERENCE // 1000}k/s",
            {k: s.us_per_delivery if s else None for k, s in refs.items()},
            ".1f",
            "goal <= 0.85x socket.io",
        )
    if r["idle"]:
        row(
            f"idle: KB RSS/conn at {IDLE:,}",
            {k: v / 1024 for k, v in r["idle"].items()},
            ".1f",
            "goal <= 10 KB",
        )
    n = SIZES[-1]
    one, two = best(fanout[n]["Dovecote"]), best(fanout[n]["Dovecote ×2"])
    one_ref, two_ref = at(fanout[n]["Dovecote"], REFERENCE), at(fanout[n]["Dovecote ×2"], REFERENCE)
    if one and two and one_ref and two_ref:
        split = "/".join(f"{c / two_ref.cpu:.0%}" for c in two_ref.cpu_each)
        print(
            f"  2 gateway workers vs 1 (SO_REUSEPORT), N={n}: max held "
            f"{two.delivered_per_s:,.0f} vs {one.delivered_per_s:,.0f} deliveries/s = "
            f"{two.delivered_per_s / one.delivered_per_s:.2f}x; "
            f"@{REFERENCE // 1000}k/s {two_ref.us_per_delivery:.1f} vs "
            f"{one_ref.us_per_delivery:.1f} us CPU/delivery, work split {split}"
        )
        print(
            f"    (1 worker was {one.busy:.0%} busy at its max held step: on {os.cpu_count()} "
            "cores the load processes, which spend more per frame than the gateway, run out of "
            "CPU first; the split says what more cores would give)"
        )
