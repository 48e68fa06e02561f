"""The herd's load processes (``bench/herd_client.py``), driven over their stdin/stdout."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from bench.herd_machine import Proc
from dovecote.project import PROJECT


class Loaders:
    """Sockets shared out over a few load processes, each told what to do on its stdin."""

    def __init__(self, processes: list[asyncio.subprocess.Process]) -> None:
        self.processes = processes
        self.procs = [Proc(p.pid) for p in processes]

    @classmethod
    async def start(cls, url: str, sockets: int, count: int, rate: float) -> Loaders:
        shares = [sockets // count + (i < sockets % count) for i in range(count)]
        processes = []
        for i, share in enumerate(shares):
            args = [url, str(share), str(sum(shares[:i])), str(rate / count)]
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.herd_client",
                    *args,
                    cwd=PROJECT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=64 * 1024 * 1024,
                )
            )
        return cls(processes)

    async def opened(self, timeout: float) -> tuple[int, int]:
        """Until every process has opened its sockets (or given up on some): (open, failed)."""
        counts = []
        for p in self.processes:
            assert p.stdout is not None
            line = (await asyncio.wait_for(p.stdout.readline(), timeout)).split()
            if line[:1] != [b"opened"]:
                raise RuntimeError(f"a herd load process failed: {line!r}")
            counts.append((int(line[1]), int(line[2])))
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    async def frames(self) -> int:
        """Ticks received so far, all sockets."""
        for p in self.processes:
            assert p.stdin is not None
            p.stdin.write(b"count\n")
        total = 0
        for p in self.processes:
            assert p.stdout is not None
            total += int(await asyncio.wait_for(p.stdout.readline(), 60))
        return total

    async def reports(self) -> list[dict[str, Any]]:
        for p in self.processes:
            assert p.stdin is not None
            p.stdin.write(b"report\n")
        replies = []
        for p in self.processes:
            assert p.stdout is not None
            replies.append(orjson.loads(await asyncio.wait_for(p.stdout.readline(), 60)))
        return replies

    def cpu(self) -> float:
        return sum(p.cpu() for p in self.procs)

    def rss(self) -> int:
        return sum(p.status("VmRSS") for p in self.procs)

    async def stop(self) -> None:
        for p in self.processes:
            if p.stdin is not None and not p.stdin.is_closing():
                p.stdin.close()
        for p in self.processes:
            try:
                await asyncio.wait_for(p.wait(), 30)
            except TimeoutError:
                p.kill()
                await p.wait()
