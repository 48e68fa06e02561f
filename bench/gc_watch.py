"""``python -m bench.gc_watch LOG MODULE``: run MODULE as ``__main__`` and time each
collection of the garbage collector's oldest generation, one line to LOG for each.

A full collection walks every object the process tracks and stops its event loop while it
does: in a gateway holding many sockets (some 75 objects each), a frame that arrives
meanwhile waits for it. The callback costs nothing between collections, so the process
measured is the process as it runs.
"""

from __future__ import annotations

import gc
import runpy
import sys
import time
from typing import Any


def watch(log_path: str) -> None:
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    started = 0.0

    def timed(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if info["generation"] != 2:
            return
        if phase == "start":
            started = time.perf_counter()
        else:
            log.write(f"{time.time():.3f} {(time.perf_counter() - started) * 1000:.1f}\n")

    gc.callbacks.append(timed)


def read(log_path: str) -> list[tuple[float, float]]:
    """(wall-clock time it ended, milliseconds) of each full collection logged."""
    with open(log_path) as log:
        return [(float(at), float(ms)) for at, ms in (line.split() for line in log)]


if __name__ == "__main__":
    watch(sys.argv[1])
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
