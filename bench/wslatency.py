"""Publish -> websocket latency through the gateway: 100 sockets, 100 msg/s.

The gateway runs as its own process; the sockets live in two load processes so that the
load generator does not measure itself (PERF.md). Each message carries its send time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from typing import Any

import aiohttp
import orjson

from bench.common import heading, percentile, private_broker
from shared import activity as act
from shared.broker import PROJECT, free_port
from shared.config import parse_mqtt_url
from shared.mqtt import Connection

SOCKETS = 100
RATE = 100  # messages per second
SECONDS = 10
LOADERS = 2


async def wait_http(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def measure() -> dict[str, Any]:
    with private_broker() as broker:
        root = f"bl{uuid.uuid4().hex[:6]}"
        port = free_port()
        env = {
            **os.environ,
            "MQTT_URL": broker.url,
            "DOVECOTE_ROOT": root,
            "PORT": str(port),
            "LOG_LEVEL": "WARNING",
        }
        gateway = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.gateway", cwd=PROJECT, env=env
        )
        loaders = []
        try:
            await wait_http(f"http://127.0.0.1:{port}/healthz")
            for _ in range(LOADERS):
                p = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bench.ws_load",
                    f"ws://127.0.0.1:{port}/ws",
                    str(SOCKETS // LOADERS),
                    cwd=PROJECT,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=64 * 1024 * 1024,
                )
                loaders.append(p)
            for p in loaders:
                assert p.stdout is not None
                assert (await p.stdout.readline()).strip() == b"ready"
            pub = Connection(
                parse_mqtt_url(broker.url),
                f"bench-pub-{root}",
                on_message=lambda m: None,
                clean_session=True,
            )
            pub.start()
            await pub.wait_connected(10)
            activity = act.new("Update", act.service_actor("bench"), {"type": "Note"})
            topic = f"{root}/events/bench/ping"
            start = time.perf_counter()
            for i in range(RATE * SECONDS):
                await asyncio.sleep(max(0.0, start + i / RATE - time.perf_counter()))
                activity["id"] = act.new_id()  # a repeated id would be deduplicated
                activity["summary"] = str(time.time_ns())
                pub.publish(topic, act.encode(activity), 0, False)
            await asyncio.sleep(1.0)
            await pub.stop()
            latencies: list[float] = []
            for p in loaders:
                assert p.stdin is not None and p.stdout is not None
                p.stdin.close()
                latencies += orjson.loads(await p.stdout.readline())
                await p.wait()
        finally:
            for p in loaders:
                if p.returncode is None:
                    p.kill()
            gateway.terminate()
            await gateway.wait()
    return {"latencies": latencies, "expected": SOCKETS * RATE * SECONDS}


def report(r: dict[str, Any]) -> None:
    lat = r["latencies"]
    heading(
        f"Publish -> websocket through the gateway: {SOCKETS} sockets, {RATE} msg/s, {SECONDS} s"
    )
    print(
        f"  delivered {len(lat):,} of {r['expected']:,}   "
        f"p50 {percentile(lat, 50):.1f} ms   p99 {percentile(lat, 99):.1f} ms   "
        f"max {max(lat, default=float('nan')):.1f} ms   (goal p50 <= 5, p99 <= 20)"
    )
