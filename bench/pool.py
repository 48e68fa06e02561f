"""A pool of 1 vs 2 workers of one service on the same burst, side by side in one run.

Each worker is its own process (``bench.pool_worker``: ~1.5 ms of CPU per message), and the
pool is measured on both brokers: on a private Mosquitto its workers join one ``$share``
group; on a private RabbitMQ node they consume the pool's quorum queue as competing consumers
over AMQP (``dovecote.poolqueue``; RabbitMQ has no ``$share``). The workers connect first;
then ``mosquitto_pub`` publishes a QoS 1 burst of N activities over MQTT and the rate is N
over the time from the start of the burst to the last "worked" report. Goal: 2 workers >=
1.5x one (2 cores here, shared with the broker and this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import REPEATS, heading, median, private_broker
from bench.consume import mosquitto_pub
from dovecote import activity as act
from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Connection, Message
from dovecote.project import PROJECT
from dovecote_testing.rabbitmq import PrivateRabbitMQ

N = 1500
SIZES = (1, 2)


async def burst(
    url: str, workers: int, extra_env: dict[str, str] | None = None
) -> tuple[float, Counter[str]]:
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
    env |= {"MQTT_URL": url, "DOVECOTE_ROOT": root, "LOG_LEVEL": "WARNING", **(extra_env or {})}
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
            act.encode(act.new("Create", act.service("bench"), {"type": "Note"})) for _ in range(N)
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


BROKERS = ("mosquitto", "rabbitmq")


@contextlib.contextmanager
def broker_for(kind: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The broker's MQTT_URL and what else a pool needs there."""
    if kind == "mosquitto":
        with private_broker() as b:
            yield b.url, {}
        return
    with tempfile.TemporaryDirectory(prefix="dovecote-bench-rabbitmq-") as d:
        node = PrivateRabbitMQ(Path(d)).start()
        try:
            yield node.url, {"DOVECOTE_AMQP_URL": node.amqp_url}
        finally:
            node.stop()


async def measure() -> dict[str, Any]:
    kinds = [k for k in BROKERS if k == "mosquitto" or PrivateRabbitMQ.available()]
    rates: dict[str, dict[int, list[float]]] = {k: {n: [] for n in SIZES} for k in kinds}
    splits: dict[str, dict[int, Counter[str]]] = {k: {} for k in kinds}
    for kind in kinds:
        with broker_for(kind) as (url, extra):
            for _ in range(REPEATS):
                for n in SIZES:  # alternated, so that machine noise hits both alike
                    rate, split = await burst(url, n, extra)
                    rates[kind][n].append(rate)
                    splits[kind][n] = split
    return {"rates": rates, "splits": splits}


def report(r: dict[str, Any]) -> None:
    for kind in r["rates"]:
        how = "$share" if kind == "mosquitto" else "the pool's quorum queue over AMQP"
        heading(
            f"Worker pool on {kind}: {N:,} QoS 1 activities, ~1.5 ms of CPU each (zlib, "
            f"512 KiB), {how}, median of {REPEATS}"
        )
        base = median(r["rates"][kind][1])
        for n in SIZES:
            m = median(r["rates"][kind][n])
            split = ", ".join(f"#{k}: {v}" for k, v in sorted(r["splits"][kind][n].items()))
            goal = "   (goal >= 1.50x)" if n > 1 else ""
            print(
                f"    {n} worker{'s' if n > 1 else ' '}  {m:>7,.0f} msg/s  {m / base:5.2f}x{goal}"
            )
            print(f"               last run's split: {split}")
