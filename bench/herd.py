"""A herd: 100,000 websockets on ONE gateway process, each receiving a 1/s tick (issue 25).

Goal: <= 1.2 GB RSS, p99 publish -> socket <= 1 s, no socket dropped. The sockets come from
a few lean load processes (``bench/herd_client.py``), opened at a controlled rate, each
from its own loopback source address; they stay signed out (public frames). Then the
gateway is watched idle for 25 s (its only work: aiohttp's heartbeat, a ping per socket
every 25 s) and while a build update stamped with its publish time goes out once a second
(``BENCH_HERD_TICKS`` ticks, 40). Printed: sockets open, failed and dropped (with reasons), the
gateway's RSS in total and per socket, its CPU idle and ticking with µs per delivery, the
load processes' own CPU, publish -> socket latency and the time to open them all.

``BENCH_HERD_SOCKETS`` (100000), ``BENCH_HERD_RATE`` (sockets opened a second, 2000),
``BENCH_HERD_LOADERS`` (load processes, 2). The bench raises its own file limit, which the
gateway and the load processes inherit (as root up to fs.nr_open); where it cannot, the
herd is as large as the limit allows, and the report says SCALED DOWN, what to raise, and
what the figures measured say of the herd asked for, as straight lines.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench import gc_watch
from bench.common import heading, median, percentile, private_broker
from bench.fleet import Publisher, Tally
from bench.herd_loaders import Loaders
from bench.herd_machine import (
    Proc,
    conntrack_count,
    kernel_notes,
    netstat,
    raise_file_limit,
    slab_bytes,
    tcp_memory_mb,
)
from bench.servers import start_dovecote
from bench.ws_load import bucket_ms

SOCKETS = int(os.environ.get("BENCH_HERD_SOCKETS", "100000"))
RATE = float(os.environ.get("BENCH_HERD_RATE", "2000"))
LOADERS = int(os.environ.get("BENCH_HERD_LOADERS", "2"))
TICKS = int(os.environ.get("BENCH_HERD_TICKS", "40"))
# The gateway watched with every socket open and no tick for one heartbeat period (aiohttp
# pings each socket every 25 s: in any 25 s after the last socket opened, each pings once).
IDLE_SECONDS = 25.0
LATE = 30.0  # seconds after the last tick past which a frame no longer counts
SETTLE = 3.0  # seconds for the herd to settle; with no frame arriving, the ticks are over
BACKLOG = 128  # aiohttp's TCPSite default, which the gateway keeps
RSS_GOAL, P99_GOAL_MS = 1.2e9, 1000.0
SPARE_FILES = 1000  # descriptors beside the sockets (a gateway holds ~40: broker, stores)
MIN_SOCKETS = 100


@dataclass
class Herd:
    sockets: int
    loaders: int
    file_limit: int
    machine: list[str]
    opened: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    open_seconds: float = 0.0
    open_cpu: float = 0.0  # the gateway's, while opening
    handshake_ms: list[float] = field(default_factory=list)
    listen: dict[str, int] = field(default_factory=dict)  # ListenOverflows/Drops meanwhile
    rss_base: int = 0
    rss_open: int = 0
    rss_end: int = 0
    rss_peak: int = 0  # VmHWM
    rss_ticking: list[int] = field(default_factory=list)  # before each tick
    tcp_mb: float = 0.0  # kernel TCP buffers with the herd open
    slab: int = 0  # growth of the kernel's unreclaimable slab, both ends of every socket
    conntrack: int | None = None  # connections tracked with the herd open
    loader_rss: int = 0
    idle_cpu: float = 0.0  # the gateway's CPU use idle, in cores
    ticks: int = 0
    tick_seconds: float = 0.0
    tick_cpu: float = 0.0  # the gateway's, over tick_seconds
    tick_waited: float = 0.0  # seconds the gateway was runnable but had no CPU
    loader_cpu: float = 0.0  # the load processes', over tick_seconds
    tally: Tally = field(default_factory=Tally)  # publish -> read by a load process
    arrived: Tally = field(default_factory=Tally)  # publish -> in the socket (kernel stamp)
    duplicates: int = 0
    unstamped: int = 0  # ticks the kernel gave no arrival time for
    spans: dict[int, list[int]] = field(default_factory=dict)  # tick -> first, last (ns)
    collections: list[tuple[float, float]] = field(default_factory=list)  # full GCs: at, ms
    tick_window: tuple[float, float] = (0.0, 0.0)  # wall clock
    per_socket: Counter[int] = field(default_factory=Counter)  # ticks received -> sockets
    open_at_end: int = 0
    skipped: str = ""
    wanted: int = 0  # the herd asked for, when the file limit allowed fewer

    @property
    def expected(self) -> int:
        return self.ticks * self.open_at_end

    def us_per_delivery(self, cpu: float) -> float:
        return cpu / self.tally.frames * 1e6 if self.tally.frames else float("nan")


def merge(herd: Herd, replies: list[dict[str, Any]]) -> None:
    for r in replies:
        herd.failed.update(r["failed"])
        herd.retried.update(r["retried"])
        herd.dropped.update(r["dropped"])
        herd.tally.frames += r["frames"]
        herd.arrived.frames += r["frames"]
        for tally, hist in ((herd.tally, r["hist"]), (herd.arrived, r["arrived"])):
            for index, count in hist.items():
                tally.hist[int(index)] = tally.hist.get(int(index), 0) + count
        herd.duplicates += r["duplicates"]
        herd.unstamped += r["unstamped"]
        for key, (first, last) in r["spans"].items():
            span = herd.spans.setdefault(int(key), [first, last])
            span[:] = [min(span[0], first), max(span[1], last)]
        herd.per_socket.update({int(k): v for k, v in r["ticks_per_socket"].items()})
        herd.open_at_end += r["open"]
        herd.handshake_ms.extend(r["handshake_ms"])


async def tick(pub: Publisher, ticks: int, gateway: Proc, rss: list[int]) -> float:
    """Tick 0 (a warm-up, not counted), then ticks 1..``ticks``, one a second on the second,
    the gateway's RSS read before each. Returns when tick 1 went out (time.monotonic)."""
    start = time.monotonic() + 1.0
    pub.conn.publish(pub.topic, pub.payload(0), 0, False)
    for k in range(1, ticks + 1):
        await asyncio.sleep(max(0.0, start + k - 1 - time.monotonic()))
        rss.append(gateway.status("VmRSS"))
        pub.conn.publish(pub.topic, pub.payload(k), 0, False)
    return start


async def run(herd: Herd, broker_url: str, rate: float, idle_seconds: float, settle: float) -> None:
    root = f"bh{uuid.uuid4().hex[:6]}"
    pub = Publisher(broker_url, root)
    await pub.start()
    gc_log = tempfile.NamedTemporaryFile(prefix="dovecote-herd-gc-", delete=False)  # noqa: SIM115
    gc_log.close()
    server = await start_dovecote(broker_url, root, gc_log=gc_log.name)
    gateway = Proc(server.processes[0].pid)
    loaders: Loaders | None = None
    try:
        await pub.wait_gateways(1)
        herd.machine.append(f"the gateway's file limit: {gateway.file_limit():,}")
        await asyncio.sleep(settle / 2)
        herd.rss_base, slab_before = gateway.status("VmRSS"), slab_bytes()
        listen_before, cpu_before, began = netstat(*LISTEN), gateway.cpu(), time.monotonic()
        loaders = await Loaders.start(server.ws_url, herd.sockets, herd.loaders, rate)
        herd.opened, _ = await loaders.opened(herd.sockets / rate * 3 + 120)
        herd.open_seconds, herd.open_cpu = time.monotonic() - began, gateway.cpu() - cpu_before
        herd.listen = {k: v - listen_before[k] for k, v in netstat(*LISTEN).items()}
        await asyncio.sleep(settle)  # the last handshakes' garbage
        herd.rss_open, herd.tcp_mb = gateway.status("VmRSS"), tcp_memory_mb()
        herd.slab, herd.conntrack = slab_bytes() - slab_before, conntrack_count()
        cpu_before = gateway.cpu()
        await asyncio.sleep(idle_seconds)
        herd.idle_cpu = (gateway.cpu() - cpu_before) / idle_seconds
        await watch_ticks(herd, pub, gateway, loaders, settle)
        merge(herd, await loaders.reports())
        herd.collections = gc_watch.read(gc_log.name)
    finally:
        if loaders is not None:
            await loaders.stop()
        await server.stop()
        await pub.stop()
        os.unlink(gc_log.name)


async def watch_ticks(
    herd: Herd, pub: Publisher, gateway: Proc, loaders: Loaders, settle: float
) -> None:
    """The ticks, and the gateway's and load processes' CPU from the first until the last
    has reached every socket, or no frame arrived for ``settle`` seconds (cut at LATE)."""
    gateway_before, loaders_before, waited = gateway.cpu(), loaders.cpu(), gateway.waited()
    herd.tick_window = (time.time(), 0.0)
    first = await tick(pub, herd.ticks, gateway, herd.rss_ticking)
    deadline, wanted = time.monotonic() + LATE, herd.ticks * herd.opened
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        frames = await loaders.frames()
        if frames >= wanted:
            break
        if frames != seen:
            seen, quiet_since = frames, time.monotonic()
        elif time.monotonic() - quiet_since > settle:
            break
    herd.tick_seconds = time.monotonic() - first
    herd.tick_window = (herd.tick_window[0], time.time())
    herd.tick_cpu = gateway.cpu() - gateway_before
    herd.tick_waited = gateway.waited() - waited
    herd.loader_cpu = loaders.cpu() - loaders_before
    herd.rss_end, herd.rss_peak = gateway.status("VmRSS"), gateway.status("VmHWM")
    herd.loader_rss = loaders.rss()


LISTEN = ("ListenOverflows", "ListenDrops")


async def measure(
    broker_url: str | None = None,
    sockets: int = SOCKETS,
    ticks: int = TICKS,
    rate: float = RATE,
    loaders: int = LOADERS,
    idle_seconds: float = IDLE_SECONDS,
    settle: float = SETTLE,
) -> Herd:
    """The herd on ``broker_url`` (a private Mosquitto when None). Where the file limit
    cannot be raised for ``sockets``, as many as it allows, and says so."""
    limit = raise_file_limit(sockets + SPARE_FILES)
    fits = min(sockets, limit - SPARE_FILES)
    herd = Herd(fits, loaders, limit, kernel_notes(sockets, BACKLOG), ticks=ticks)
    if fits < sockets:
        herd.wanted = sockets
    if fits < MIN_SOCKETS:
        herd.skipped = f"SKIPPED: a file limit of {limit:,} leaves room for too few sockets"
        return herd
    if broker_url is not None:
        await run(herd, broker_url, rate, idle_seconds, settle)
    else:
        with private_broker() as broker:
            await run(herd, broker.url, rate, idle_seconds, settle)
    return herd


def reasons(counts: Counter[str]) -> str:
    return "; ".join(f"{n:,} {why}" for why, n in counts.most_common()) or "none"


def report(h: Herd) -> None:
    asked = f" ({h.wanted:,} asked for)" if h.wanted else ""
    heading(
        f"Herd: {h.sockets:,} websockets on one gateway process{asked}, a tick a second to "
        f"each (goal <= {RSS_GOAL / 1e9:g} GB RSS, p99 <= {P99_GOAL_MS / 1000:g} s, none dropped)"
    )
    print(f"  file limit {h.file_limit:,} (this process; the gateway and loaders inherit it)")
    if h.wanted:
        print(
            f"  SCALED DOWN: {h.wanted:,} sockets need a file limit of "
            f"{h.wanted + SPARE_FILES:,} and this process may not raise its own past "
            f"{h.file_limit:,} (its hard limit: raising it takes root with CAP_SYS_RESOURCE; "
            "`ulimit -Hn` first). The figures below are for the sockets that fit."
        )
    for note in h.machine:
        print(f"  {note}")
    if h.skipped:
        print(f"  {h.skipped}")
        return
    opening(h)

    def mb_kb(rss: int) -> str:
        return f"{rss / 2**20:,.0f} MB = {(rss - h.rss_base) / max(1, h.opened) / 1024:.1f} KB"

    ticking = h.rss_ticking or [0]
    print(
        f"  gateway RSS: {h.rss_base / 2**20:,.0f} MB before; with the herd open "
        f"{mb_kb(h.rss_open)} a socket; after a heartbeat round (tick 1) {mb_kb(ticking[0])}; "
        f"{ticking[len(ticking) // 2] / 2**20:,.0f} MB at tick {len(ticking) // 2 + 1}, "
        f"{h.rss_end / 2**20:,.0f} MB after the last; peak {mb_kb(h.rss_peak)} a socket "
        f"({'within' if h.rss_peak <= RSS_GOAL else 'OVER'} the goal)"
    )
    tracked = f"; {h.conntrack:,} connections tracked" if h.conntrack is not None else ""
    print(
        f"  outside the gateway: kernel slab +{h.slab / 2**20:,.0f} MB "
        f"({h.slab / max(1, h.opened) / 1024:.1f} KB a connection, both ends), TCP buffers "
        f"{h.tcp_mb:,.0f} MB{tracked}; the load processes {h.loader_rss / 2**20:,.0f} MB"
    )
    seconds = h.tick_seconds or float("nan")
    idle_share = h.idle_cpu * h.tick_seconds
    print(
        f"  gateway CPU: idle {h.idle_cpu:.0%} ({h.idle_cpu * 25 / max(1, h.opened) * 1e6:.1f} "
        f"µs a socket's heartbeat ping), ticking "
        f"{h.tick_cpu / seconds:.0%} over {h.tick_seconds:.0f} s (and waited for a CPU "
        f"{h.tick_waited / seconds:.0%} of it: the machine's other work): "
        f"{h.tally.frames / seconds:,.0f} deliveries/s at {h.us_per_delivery(h.tick_cpu):.2f} "
        f"µs CPU a delivery ({h.us_per_delivery(h.tick_cpu - idle_share):.2f} µs without "
        f"the idle share); the load processes {h.loader_cpu / seconds:.0%} "
        f"({h.us_per_delivery(h.loader_cpu):.2f} µs a frame received)"
    )

    def spread(t: Tally) -> str:
        if not t.hist:
            return "none"
        low, high = bucket_ms(min(t.hist)), bucket_ms(max(t.hist))
        return (
            f"min {low:.1f}, p50 {t.percentile(50):.1f}, p99 {t.percentile(99):.1f}, "
            f"max {high:.0f} ms"
        )

    p99 = h.arrived.percentile(99)
    print(
        f"  publish -> socket over {h.ticks} ticks: {spread(h.arrived)} "
        f"({'within' if p99 <= P99_GOAL_MS else 'OVER'} the goal; the kernel's stamp of "
        f"its arrival); read by a load process: {spread(h.tally)}; "
        f"{h.tally.frames:,} of {h.expected:,} deliveries"
        + (f", {h.duplicates:,} duplicated" if h.duplicates else "")
        + (f", {h.unstamped:,} with no kernel stamp (read time used)" if h.unstamped else "")
    )
    if h.spans:
        firsts = [first / 1e6 for first, _ in h.spans.values()]
        fan_outs = [(last - first) / 1e6 for first, last in h.spans.values()]
        print(
            f"  a tick reached its first socket after {median(firsts):.1f} ms (median over "
            f"ticks; slowest {max(firsts):.0f} ms), its last {median(fan_outs):.0f} ms later "
            f"(slowest {max(fan_outs):.0f} ms): the fan-out, written in one turn of the loop"
        )
    collections(h)
    short = sum(n for got, n in h.per_socket.items() if got < h.ticks)
    print(
        f"  sockets open at the end {h.open_at_end:,}; dropped: {reasons(h.dropped)}; "
        f"sockets that missed a tick: {short:,}"
    )
    if h.wanted:
        peak = (h.rss_peak - h.rss_base) / max(1, h.opened)
        extrapolate(h, peak, h.us_per_delivery(h.tick_cpu - idle_share))


def collections(h: Herd) -> None:
    """The gateway's full garbage collections: each one stops its loop (bench/gc_watch.py)."""
    start, end = h.tick_window
    ticking = [ms for at, ms in h.collections if start <= at <= end]
    longest = max((ms for _, ms in h.collections), default=0.0)
    print(
        f"  the gateway's full garbage collections (its loop stops for each): "
        f"{len(h.collections)} in all, longest {longest:,.0f} ms; {len(ticking)} while "
        f"ticking" + (f", {sum(ticking):,.0f} ms in all" if ticking else "")
    )


def opening(h: Herd) -> None:
    print(
        f"  opened {h.opened:,} of {h.sockets:,} in {h.open_seconds:.1f} s "
        f"({h.opened / h.open_seconds:,.0f}/s over {h.loaders} load processes); "
        f"failed: {reasons(h.failed)}; retried: {reasons(h.retried)}"
    )
    if h.handshake_ms:
        print(
            f"  connect -> 101: p50 {median(h.handshake_ms):.1f} ms, "
            f"p99 {percentile(h.handshake_ms, 99):.1f} ms, max {max(h.handshake_ms):.0f} ms; "
            f"gateway CPU while opening {h.open_cpu / h.open_seconds:.0%} "
            f"({h.open_cpu / max(1, h.opened) * 1e6:,.0f} µs a socket); "
            f"listen queue overflows {h.listen['ListenOverflows']:,}, "
            f"drops {h.listen['ListenDrops']:,}"
        )


def extrapolate(h: Herd, per_socket: float, us_per_delivery: float) -> None:
    """What the measured herd says of the one asked for: straight lines, said as such."""
    rss = h.rss_base + per_socket * h.wanted
    fan_out = us_per_delivery * h.wanted / 1e6
    heartbeats = h.idle_cpu * h.wanted / max(1, h.opened)
    print(
        f"  EXTRAPOLATED to {h.wanted:,} (straight lines from this run, not measured): peak RSS "
        f"~{rss / 1e9:.2f} GB; a tick's fan-out ~{fan_out:.2f} s of the gateway's CPU "
        f"({h.wanted:,} x {us_per_delivery:.2f} µs, in one turn of its loop: about the last "
        f"socket's latency on an idle machine); heartbeats ~{heartbeats:.0%} of a core"
    )
