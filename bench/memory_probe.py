"""A gateway process that reports its own memory when asked (``bench/socket_memory.py``).

``python -m bench.memory_probe`` runs the gateway exactly as ``python -m services.gateway``
does, except that SIGUSR1 writes a report to ``PROBE_DIR/<k>.json`` (k = 1, 2, ...): RSS,
and glibc malloc's and pymalloc's own accounting. With ``PROBE_FRAMES`` set, the first
report starts tracemalloc (that many frames a trace), and every report has a snapshot
(``<k>.snap``); from the second on, they also count the objects allocated since the first
and still alive, by type. The gateway starts and serves untraced until the first report,
as fast as ever. The signal handler runs on the main thread between two
bytecodes, while the event loop is idle or between two callbacks.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (malloc(3)'s own accounting, size_t fields)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # bytes taken with brk (the main heap)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in blocks taken with mmap
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use
            "fordblks",  # bytes free inside the heap (fragmentation, or not yet trimmed)
            "keepcost",
        )
    ]


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def mallinfo() -> dict[str, int]:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return {name: int(getattr(info, name)) for name in ("arena", "hblkhd", "uordblks", "fordblks")}


PYMALLOC_LINES = {
    "# arenas allocated current": "arenas",
    "# bytes in allocated blocks": "allocated",
    "# bytes in available blocks": "available",
    "# bytes lost to quantization": "quantization",
}


def pymalloc() -> dict[str, int]:
    """The totals of ``sys._debugmallocstats()`` (it writes to the C stderr: caught here)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode()
    found: dict[str, int] = {}
    for line in text.splitlines():
        label, _, value = line.partition("=")
        if label.strip() in PYMALLOC_LINES:
            found[PYMALLOC_LINES[label.strip()]] = int(value.strip().replace(",", ""))
        elif "unused pools *" in label:
            found["unused_pools"] = int(value.strip().replace(",", ""))
    return found


UNTRACKED = (str, bytes, bytearray, int, float)  # held by objects, unseen by the gc


def census() -> dict[str, list[int]]:
    """The objects allocated since tracing started and still alive, by type: [count,
    bytes]. The gc-tracked ones (found by ``gc.get_objects``), and the untracked ones they
    hold (str, bytes, int, float: found among their referents); ``sys.getsizeof`` counts
    an object with its own buffers (a dict's table, a coroutine's frame), not what it
    refers to. Written to allocate little: everything allocated here is traced too."""
    counts: Counter[type] = Counter()
    sizes: Counter[type] = Counter()
    seen: set[int] = set()
    traced = tracemalloc._get_object_traceback  # type: ignore[attr-defined]  # raw: cheaper
    getsizeof, referents, untracked = sys.getsizeof, gc.get_referents, UNTRACKED
    mine = {id(counts), id(sizes), id(seen)}
    for obj in gc.get_objects():
        if traced(obj) is None or id(obj) in mine:
            continue
        kind = type(obj)
        counts[kind] += 1
        sizes[kind] += getsizeof(obj)
        for ref in referents(obj):
            kind = type(ref)
            if kind in untracked and traced(ref) is not None and id(ref) not in seen:
                seen.add(id(ref))
                counts[kind] += 1
                sizes[kind] += getsizeof(ref)
    return {f"{k.__module__}.{k.__qualname__}": [counts[k], sizes[k]] for k in counts}


def report(out: Path, number: int, frames: int) -> None:
    data: dict[str, Any] = {"garbage": gc.collect() if os.environ.get("PROBE_COLLECT") else 0}
    data.update(rss=rss_bytes(), malloc=mallinfo(), pymalloc=pymalloc())
    if frames:
        started = tracemalloc.is_tracing()
        if not started:
            tracemalloc.start(frames)
        data["traced"] = tracemalloc.get_traced_memory()[0]
        data["tracing_overhead"] = tracemalloc.get_tracemalloc_memory()
        tracemalloc.take_snapshot().dump(str(out / f"{number}.snap"))
        if started:  # last: what the census allocates is in neither figure above
            data["types"] = census()
    (out / f"{number}.tmp").write_text(json.dumps(data))
    (out / f"{number}.tmp").rename(out / f"{number}.json")


def main() -> None:
    frames = int(os.environ.get("PROBE_FRAMES", "0"))
    out = Path(os.environ["PROBE_DIR"])
    asked = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal asked
        asked += 1
        report(out, asked, frames)

    signal.signal(signal.SIGUSR1, on_signal)
    from dovecote import run
    from services.gateway.service import Gateway

    run(Gateway)


if __name__ == "__main__":
    main()
