"""`make bench` (python -m bench [SECTION ...]): sections run in one process, one run."""

from __future__ import annotations

import asyncio
import sys

from bench import common, consume, gateway, herd, inbox, pipeline, pool, stores, wslatency

SECTIONS = {
    "consume": consume,
    "wslatency": wslatency,
    "pipeline": pipeline,
    "gateway": gateway,
    "pool": pool,
    "inbox": inbox,
    "stores": stores,
    "herd": herd,
}


def main(argv: list[str]) -> int:
    wanted = argv or list(SECTIONS)
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        print(f"unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
        return 2
    print(f"Dovecote bench · {common.machine()}")
    for name in wanted:
        module = SECTIONS[name]
        module.report(asyncio.run(module.measure()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
