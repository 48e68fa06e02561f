"""Where an idle websocket's memory goes: ``python -m bench.socket_memory [N]``.

The same setting as ``make bench sections=gateway``'s idle step (bench/gateway.py,
``idle_rss``): one gateway process, 200 sockets opened first, then N more (default 10,000,
``BENCH_IDLE_SOCKETS``) from 4 load processes, read 2 s later. Run twice:

1. untraced: RSS per socket, and how much of it the allocators account for (pymalloc's
   arenas and glibc malloc's heap, each as used and free space);
2. under tracemalloc (``SOCKET_MEMORY_FRAMES`` frames a trace, default 12): the bytes
   a socket by allocation site (the source line that allocated them, and the first line of
   the gateway's own or aiohttp's code that led there) and the gc-tracked objects a socket
   by type. Tracing costs memory of its own, so the RSS per socket is run 1's.
"""

from __future__ import annotations

import asyncio
import json
import linecache
import os
import shutil
import signal
import sys
import tempfile
import tracemalloc
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import machine, private_broker
from bench.fleet import Fleet
from bench.gateway import LOADERS, raise_file_limit
from bench.servers import start_dovecote

SOCKETS = int(os.environ.get("BENCH_IDLE_SOCKETS", "10000"))
WARM = 200  # opened before the first reading, as in bench/gateway.py
FRAMES = int(os.environ.get("SOCKET_MEMORY_FRAMES", "12"))
SETTLE = 2.0  # seconds between the last socket open and the reading (bench/gateway.py)
TOP = int(os.environ.get("SOCKET_MEMORY_TOP", "25"))
COLLECT = os.environ.get("SOCKET_MEMORY_COLLECT", "")  # "1": gc.collect() before each reading
KEEP = os.environ.get("SOCKET_MEMORY_KEEP", "")  # a folder to keep the two snapshots in
HERE = str(Path(__file__).resolve().parents[1])


@dataclass
class Run:
    n: int
    before: dict[str, Any]
    after: dict[str, Any]
    snapshots: list[tracemalloc.Snapshot] = field(default_factory=list)

    def per_socket(self, *keys: str) -> float:
        def get(d: dict[str, Any]) -> float:
            for key in keys:
                d = d[key]
            return float(d)  # type: ignore[arg-type]

        return (get(self.after) - get(self.before)) / self.n


async def ask(pid: int, out: Path, number: int) -> dict[str, Any]:
    os.kill(pid, signal.SIGUSR1)
    path = out / f"{number}.json"
    for _ in range(3000):  # a census of 10,000 sockets' objects takes a while
        if path.exists():
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the probed gateway wrote no {path}")


async def probe(broker_url: str, n: int, frames: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="dovecote-socket-memory-") as d:
        out = Path(d)
        env = {"PROBE_DIR": d, "PROBE_FRAMES": str(frames), "PROBE_COLLECT": COLLECT}
        root = f"sm{uuid.uuid4().hex[:6]}"
        server = await start_dovecote(broker_url, root, module="bench.memory_probe", extra_env=env)
        pid = server.processes[0].pid
        try:
            warm = await Fleet.open(server.ws_url, WARM, 1)
            try:
                await asyncio.sleep(1.0)
                before = await ask(pid, out, 1)
                fleet = await Fleet.open(server.ws_url, n, LOADERS)
                try:
                    await asyncio.sleep(SETTLE)
                    after = await ask(pid, out, 2)
                finally:
                    await fleet.close()
            finally:
                await warm.close()
        finally:
            await server.stop()
        run = Run(n, before, after)
        if frames:
            run.snapshots = [tracemalloc.Snapshot.load(str(out / f"{k}.snap")) for k in (1, 2)]
            if KEEP:  # to dig further: tracemalloc.Snapshot.load(...).compare_to(...)
                for k in (1, 2):
                    shutil.copy(out / f"{k}.snap", Path(KEEP) / f"socket-memory-{k}.snap")
        return run


def short(filename: str) -> str:
    for marker in ("site-packages/", "python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename.removeprefix(HERE + "/")


def ours_or_aiohttp(frame: tracemalloc.Frame) -> bool:
    name = frame.filename
    return (HERE in name and ".venv" not in name) or "aiohttp/" in name


def site_table(run: Run) -> list[tuple[float, float, str, str]]:
    """(bytes a socket, blocks a socket, where, via) for the sites that grew most."""
    before, after = run.snapshots
    grown: Counter[tuple[str, str]] = Counter()
    blocks: Counter[tuple[str, str]] = Counter()
    ignore = [tracemalloc.Filter(False, __file__.replace("socket_memory", "memory_probe"))]
    for stat in after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "traceback"):
        frames = list(reversed(stat.traceback))  # most recent first
        top = frames[0]
        where = f"{short(top.filename)}:{top.lineno}"
        via = next((f for f in frames if ours_or_aiohttp(f)), None)
        via_text = f"{short(via.filename)}:{via.lineno}" if via is not None and via != top else ""
        grown[(where, via_text)] += stat.size_diff
        blocks[(where, via_text)] += stat.count_diff
    rows = [(size / run.n, blocks[key] / run.n, *key) for key, size in grown.items()]
    return sorted(rows, reverse=True)


def type_table(run: Run) -> list[tuple[str, float, float]]:
    """(type, objects a socket, bytes a socket) of what was allocated between the two
    readings and is still alive (bench/memory_probe.py: ``census``)."""
    rows = [
        (name, count / run.n, size / run.n) for name, (count, size) in run.after["types"].items()
    ]
    return sorted(rows, key=lambda r: -r[2])


def source(where: str) -> str:
    name, _, line = where.rpartition(":")
    for base in (HERE, *sys.path):
        text = linecache.getline(os.path.join(base, name), int(line)).strip()
        if text:
            return text[:60]
    return ""


def report(plain: Run, traced: Run) -> None:
    n = plain.n
    print(f"Idle websocket memory · {machine()} · load {os.getloadavg()[0]:.2f}")
    print(f"  {n:,} idle sockets on one gateway process, on top of {WARM}; read {SETTLE:g} s later")
    if COLLECT:
        print(f"  gc.collect() before each reading: {plain.after['garbage']:,} objects freed")
    rss = plain.per_socket("rss")
    pym = plain.per_socket("pymalloc", "arenas") * 1024 * 1024
    used = plain.per_socket("pymalloc", "allocated")
    heap = plain.per_socket("malloc", "arena") + plain.per_socket("malloc", "hblkhd")
    inuse = plain.per_socket("malloc", "uordblks")
    traced_bytes = traced.per_socket("traced")
    print(f"\n  {'per socket':48} {'bytes':>8}")
    for label, value in (
        ("RSS (untraced run)", rss),
        ("  pymalloc arenas (1 MiB each)", pym),
        ("    of which in live objects", used),
        ("  glibc malloc heap (brk + mmap)", heap),
        ("    of which in use", inuse),
        ("  other (RSS - arenas - heap)", rss - pym - heap),
        ("tracemalloc: live Python allocations (traced run)", traced_bytes),
    ):
        print(f"  {label:48} {value:8,.0f}")
    print(f"\n  by allocation site (traced run, {FRAMES} frames; 'via': the nearest ours/aiohttp)")
    print(f"  {'bytes':>6} {'blocks':>6}  {'site':42} {'via':34} source")
    rows = site_table(traced)
    for size, blocks, where, via in rows[:TOP]:
        print(f"  {size:6,.0f} {blocks:6.2f}  {where:42} {via:34} {source(where)}")
    rest = sum(r[0] for r in rows[TOP:])
    print(f"  {rest:6,.0f}         (the other {len(rows) - TOP} sites)")
    print("\n  by object type (traced run; bytes: sys.getsizeof, an object with its own buffers)")
    print(f"  {'objects':>7} {'bytes':>6}  type")
    types = type_table(traced)
    for name, count, size in types[:TOP]:
        print(f"  {count:7.2f} {size:6,.0f}  {name}")
    rest = sum(r[2] for r in types[TOP:])
    print(f"  {'':7} {rest:6,.0f}  (the other {max(0, len(types) - TOP)} types)")
    print(
        f"  {'':7} {traced_bytes - sum(r[2] for r in types):6,.0f}  (traced, in no object: "
        "C-level buffers, free lists, the census' own error)"
    )


async def measure(n: int) -> tuple[Run, Run]:
    limit = raise_file_limit()
    if limit < n + WARM + 1000:
        raise SystemExit(f"file limit {limit} is too low for {n} sockets")
    with private_broker() as broker:
        plain = await probe(broker.url, n, 0)
        traced = await probe(broker.url, n, FRAMES)
    return plain, traced


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else SOCKETS
    report(*asyncio.run(measure(n)))


if __name__ == "__main__":
    main(sys.argv[1:])
