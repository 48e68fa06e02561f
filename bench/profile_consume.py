"""Where one worker's time goes while it drains a QoS 1 backlog: a cProfile of the same
drain as ``make bench sections=consume`` (20,000 build updates queued for an offline
session on a private Mosquitto), summed by layer.

    .venv/bin/python -m bench.profile_consume        # or N=50000 for a longer drain

A layer is where a function is defined: paho-mqtt's client, the project's connection glue
(``dovecote.mqtt``), the message path (``dovecote.dispatch`` and the handler), msgspec
decoding, the metrics meter, asyncio's loop and the socket calls. cProfile's own overhead
inflates small functions, so the shares are what to read, not the microseconds.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import uuid
from collections import defaultdict

from bench.common import private_broker
from bench.consume import Clock, Counter, make_session, payloads, preload
from dovecote.config import Settings
from dovecote.worker import Worker

LAYERS = (  # first match wins: (label, a part of the defining file's path or the name)
    ("paho-mqtt (the packets other than PUBLISH, its loop calls)", "paho/"),
    ("dovecote.mqtt (reading PUBLISH packets, PUBACKs, paho on asyncio)", "dovecote/mqtt/"),
    ("dispatch (route, decode call, dedupe, handler, ack)", "dovecote/dispatch.py"),
    ("dispatch (route, decode call, dedupe, handler, ack)", "dovecote/routes.py"),
    ("dispatch (route, decode call, dedupe, handler, ack)", "dovecote/dedupe.py"),
    ("metrics meter", "dovecote/metrics.py"),
    ("activity model (msgspec decode and checks)", "dovecote/activity.py"),
    ("the bench handler", "bench/"),
    ("asyncio event loop", "asyncio/"),
    ("socket and select calls (C)", "<method 'recv'"),
    ("socket and select calls (C)", "<method 'send'"),
    ("socket and select calls (C)", "<method 'poll'"),
    ("socket and select calls (C)", "select"),
    ("msgspec (C decode)", "msgspec"),
)


def layer(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for label, part in LAYERS:
        if part in where:
            return label
    return "other (Python builtins, logging, ...)"


async def drain(url: str, n: int) -> Clock:
    root = f"prof{uuid.uuid4().hex[:8]}"
    data = payloads(n)
    topic = f"{root}/events/bench/build"
    await make_session(url, f"{root}-benchsvc-1", topic)
    await preload(url, topic, data)
    settings = Settings.from_env({"MQTT_URL": url, "DOVECOTE_ROOT": root, "LOG_LEVEL": "WARNING"})
    clock = Clock(n)
    Counter.clock = clock
    worker = Worker(Counter, settings)
    profile = cProfile.Profile()
    profile.enable()
    await worker.start()
    await asyncio.wait_for(clock.finished.wait(), 300)
    profile.disable()
    await worker.shutdown()
    report(profile, n)
    return clock


def report(profile: cProfile.Profile, n: int) -> None:
    stats = pstats.Stats(profile)
    own: dict[str, float] = defaultdict(float)  # a function's own time, not its callees'
    total = 0.0
    rows = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, name), (_cc, _nc, tottime, _cum, _callers) in rows.items():
        own[layer(filename, name)] += tottime
        total += tottime
    print(f"\n== where a worker's time goes draining {n:,} messages (cProfile, own time)")
    for label, spent in sorted(own.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<55} {spent / total:6.1%}   {spent / n * 1e6:6.2f} us/msg")
    print("\n  the 12 functions with most own time:")
    stats.sort_stats("tottime").print_stats(12)


def main() -> None:
    n = int(os.environ.get("N", "20000"))
    with private_broker() as b:
        asyncio.run(drain(b.url, n))


if __name__ == "__main__":
    main()
