"""The load side of a fan-out bench: websocket load processes and a paced publisher.

Sockets are spread over several load processes (``bench.ws_load``): one process saturates
long before the servers do (docs/performance.md). The publisher stamps every message with
its step and send time, so late frames of one step never count in the next.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.ws_load import bucket_ms
from dovecote import activity as act
from dovecote import topics
from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Connection, Message
from dovecote.project import PROJECT
from services.builder import topics as builder_topics


@dataclass
class Tally:
    """What the load processes counted in one step."""

    frames: int = 0
    closed: int = 0
    hist: dict[int, int] = field(default_factory=dict)

    def percentile(self, p: float) -> float:
        """The p-th percentile latency in ms (upper edge of its histogram bucket)."""
        if not self.frames:
            return float("nan")
        rank = p / 100 * self.frames
        seen = 0
        for index in sorted(self.hist):
            seen += self.hist[index]
            if seen >= rank:
                return bucket_ms(index)
        return bucket_ms(max(self.hist))


class Fleet:
    """``n`` websocket clients of one server, spread over ``processes`` load processes."""

    def __init__(self, loaders: list[asyncio.subprocess.Process]) -> None:
        self.loaders = loaders

    @classmethod
    async def open(cls, url: str, n: int, processes: int, engineio: bool = False) -> Fleet:
        shares = [n // processes + (i < n % processes) for i in range(processes)]
        loaders = []
        for share in shares:
            args = [url, str(share), *(["--engineio"] if engineio else [])]
            loaders.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.ws_load",
                    *args,
                    cwd=PROJECT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=16 * 1024 * 1024,
                )
            )
        fleet = cls(loaders)
        try:
            for line in await fleet._ask(None, 180):
                if line != b"ready":
                    raise RuntimeError(f"a load process failed to connect: {line!r}")
        except BaseException:
            await fleet.close()
            raise
        return fleet

    async def _ask(self, command: str | None, timeout: float = 60) -> list[bytes]:
        for p in self.loaders:
            assert p.stdin is not None
            if command is not None:
                p.stdin.write(command.encode() + b"\n")
        replies = []
        for p in self.loaders:
            assert p.stdout is not None
            replies.append((await asyncio.wait_for(p.stdout.readline(), timeout)).strip())
        return replies

    async def step(self, step: int) -> None:
        await self._ask(f"step {step}")

    async def report(self) -> Tally:
        tally = Tally()
        for line in await self._ask("report"):
            r: dict[str, Any] = orjson.loads(line)
            tally.frames += r["frames"]
            tally.closed += r["closed"]
            for index, count in r["hist"].items():
                tally.hist[int(index)] = tally.hist.get(int(index), 0) + count
        return tally

    async def close(self) -> None:
        for p in self.loaders:
            if p.stdin is not None and not p.stdin.is_closing():
                p.stdin.close()
        for p in self.loaders:
            try:
                await asyncio.wait_for(p.wait(), 20)
            except TimeoutError:
                p.kill()
                await p.wait()


class Publisher:
    """Publishes realistic build updates (QoS 0, as the builder's ticks) at a paced rate."""

    def __init__(self, broker_url: str, root: str) -> None:
        self.root = root
        self.seen: set[str] = set()
        self.conn = Connection(
            parse_mqtt_url(broker_url),
            f"bench-pub-{root}",
            on_message=self._heard,
            clean_session=True,
            manual_ack=False,
        )
        self.topic = builder_topics.BUILD_PROGRESS.address(root)
        self.build = {
            "type": "Build",
            "id": act.new_id(),
            "name": "Build #1",
            "state": "running",
            "progress": 50,
            "startTime": act.now(),
            "worker": "builder.1",
        }

    def _heard(self, msg: Message) -> None:
        if msg.payload:
            self.seen.add(msg.topic)

    async def start(self) -> None:
        self.conn.subscribe(f"{self.root}/services/#", 0)
        self.conn.start()
        await self.conn.wait_connected(10)

    async def wait_gateways(self, workers: int, timeout: float = 20) -> None:
        """Until every gateway worker said Join: its subscriptions are in place by then."""
        wanted = {
            topics.PRESENCE.address(self.root, service="gateway", instance=str(i))
            for i in range(1, workers + 1)
        }
        deadline = time.monotonic() + timeout
        while not wanted <= self.seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway workers did not join: {wanted - self.seen}")
            await asyncio.sleep(0.05)

    def payload(self, step: int) -> bytes:
        activity = act.new("Update", act.service("builder"), self.build)
        activity["summary"] = f"{step}:{time.time_ns()}"
        return act.encode(activity)

    async def run(self, step: int, rate: float, seconds: float) -> int:
        """Publish ``rate`` messages/s for ``seconds``, evenly paced. Returns how many."""
        total = round(rate * seconds)
        sent = 0
        start = time.perf_counter()
        while sent < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while sent < due:
                self.conn.publish(self.topic, self.payload(step), 0, False)
                sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        return sent

    async def stop(self) -> None:
        await self.conn.stop()
