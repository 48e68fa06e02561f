"""A pool of 1 vs 2 workers of one service on the same burst, side by side in one run.

Each worker is its own process (``bench.pool_worker``: ~1.5 ms of CPU per message), joined
to one ``$share`` group on a private Mosquitto. The workers connect first; then
``mosquitto_pub`` publishes a QoS 1 burst of N activities and the rate is N over the time
from the start of the burst to the last "worked" report. Goal: 2 workers >= 1.5x one
(2 cores here, shared with the broker and this process).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from typing import Any

from bench.common import REPEATS, heading, median, private_broker
from bench.consume import mosquitto_pub
from dovecote import activity as act
from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Connection, Message
from dovecote.project import PROJECT

N = 1500
SIZES = (1, 2)


async def burst(url: str, workers: int) -> tuple[float, Counter[str]]:
    root = f"p{uuid.uuid4().hex[:8]}"
    done: dict[str, float] = {}
    by_worker: Counter[str] = Counter()
    online: set[str] = set()
    all_online, finished = asyncio.Event(), asyncio.Event()

    def record(m: Message) -> None:
        if "/services/benchpool/" in m.topic and b'"Join"' in m.payload:
            online.add(m.topic)
            if len(online) == workers:
                all_online.set()
        elif m.topic.endswith("/events/bench/worked"):
            a: Any = act.Codec(act.Activity).decode(m.payload)
            done.setdefault(a.object["name"], time.perf_counter())
            by_worker[a.result["name"]] += 1
            if len(done) == N:
                finished.set()

    watch = Connection(parse_mqtt_url(url), f"w-{root}", on_message=record, manual_ack=False)
    watch.start()
    await watch.wait_connected(10)
    for f in (f"{root}/events/bench/worked", f"{root}/services/benchpool/+"):
        fut = watch.subscribe(f, 1)
        assert fut is not None
        await fut
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "DOVECOTE_"))}
    env |= {"MQTT_URL": url, "DOVECOTE_ROOT": root, "LOG_LEVEL": "WARNING"}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.pool_worker",
            cwd=PROJECT,
            env={**env, "DOVECOTE_INSTANCE": str(i + 1)},
        )
        for i in range(workers)
    ]
    try:
        await asyncio.wait_for(all_online.wait(), 60)
        await asyncio.sleep(0.3)  # idle, subscribed
        data = [
            act.encode(act.new("Create", act.service_actor("bench"), {"type": "Note"}))
            for _ in range(N)
        ]
        began = time.perf_counter()
        await mosquitto_pub(url, f"{root}/events/bench/work", data)
        await asyncio.wait_for(finished.wait(), 300)
        return N / (max(done.values()) - began), by_worker
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            await p.wait()
        await watch.stop()


async def measure() -> dict[str, Any]:
    rates: dict[int, list[float]] = {n: [] for n in SIZES}
    splits: dict[int, Counter[str]] = {}
    with private_broker() as broker:
        for _ in range(REPEATS):
            for n in SIZES:  # alternated, so that machine noise hits both alike
                rate, split = await burst(broker.url, n)
                rates[n].append(rate)
                splits[n] = split
    return {"rates": rates, "splits": splits}


def report(r: dict[str, Any]) -> None:
    heading(
        f"Worker pool: {N:,} QoS 1 activities, ~1.5 ms of CPU each (zlib, 512 KiB), "
        f"$share on Mosquitto, median of {REPEATS}"
    )
    base = median(r["rates"][1])
    for n in SIZES:
        m = median(r["rates"][n])
        split = ", ".join(f"#{k}: {v}" for k, v in sorted(r["splits"][n].items()))
        goal = "   (goal >= 1.50x)" if n > 1 else ""
        print(f"    {n} worker{'s' if n > 1 else ' '}  {m:>7,.0f} msg/s  {m / base:5.2f}x{goal}")
        print(f"               last run's split: {split}")
