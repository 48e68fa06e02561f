"""The stores on SQLite and on PostgreSQL, side by side in one run.

Awards: a points worker (its own process) on a private Mosquitto; ``mosquitto_pub``
publishes a QoS 1 burst of N uploads (``events/image/created``, N people), and the rate is N
over the time from the start of the burst to the Nth ``events/points/awarded``. The ledger
is a SQLite file, or the ``points`` schema of a private PostgreSQL started as a deployment
runs it (fsync and synchronous commit on: a commit waits for the disk). Rounds alternate
between the two, so machine noise hits both alike; medians. CPU µs an award of the points
process, and of the PostgreSQL server (every backend), beside each rate.

Upload -> thumbnail: ``bench.pipeline``'s measurement (gateway, resizer, notifier, points
as processes), once with every store in files and once with DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import pipeline
from bench.common import REPEATS, heading, median, private_broker
from bench.consume import mosquitto_pub
from dovecote import activity as act
from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Connection, Message
from dovecote.project import PROJECT
from dovecote_testing.postgres import PrivatePostgres

N = int(os.environ.get("BENCH_AWARDS", "3000"))
KINDS = ("sqlite", "postgresql")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (what each costs, not the machine's)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def postgres_pids(server: PrivatePostgres) -> list[int]:
    """The postmaster and its children (backends, WAL writer, checkpointer)."""
    main = int((server.data / "postmaster.pid").read_text().split()[0])
    children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
    return [main, *map(int, children)]


def upload(n: int) -> bytes:
    person = {
        "type": "Person",
        "id": f"http://bench/users/p{n % 200}",
        "name": f"Person {n % 200}",
        "preferredUsername": f"p{n % 200}",
    }
    image = {
        "type": "Image",
        "id": f"http://bench/images/{uuid.uuid4().hex}",
        "url": f"http://bench/images/{n}",
        "mediaType": "image/jpeg",
        "name": f"photo {n}",
        "width": 10,
        "height": 10,
        "size": 100,
    }
    return act.encode(act.new("Create", person, image))


async def awards(
    url: str, env_extra: dict[str, str], folder: Path, pg: PrivatePostgres
) -> dict[str, float]:
    root = f"s{uuid.uuid4().hex[:8]}"
    seen: list[float] = []
    online, finished = asyncio.Event(), asyncio.Event()

    def record(m: Message) -> None:
        if m.topic == f"{root}/services/points/1" and b'"Join"' in m.payload:
            online.set()
        elif m.topic.endswith("/events/points/awarded"):
            seen.append(time.perf_counter())
            if len(seen) == N:
                finished.set()

    watch = Connection(parse_mqtt_url(url), f"w-{root}", on_message=record, manual_ack=False)
    watch.start()
    await watch.wait_connected(10)
    for f in (f"{root}/events/points/awarded", f"{root}/services/points/+"):
        fut = watch.subscribe(f, 1)
        assert fut is not None
        await fut
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "DOVECOTE_"))}
    env |= {
        "MQTT_URL": url,
        "DOVECOTE_ROOT": root,
        "LOG_LEVEL": "WARNING",
        "DOVECOTE_DATA_DIR": str(folder / root),
        **env_extra,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.points", cwd=PROJECT, env=env
    )
    try:
        await asyncio.wait_for(online.wait(), 60)
        await asyncio.sleep(0.5)  # subscribed, the leaderboard published
        data = [upload(n) for n in range(N)]
        watched = [proc.pid]
        db_pids = postgres_pids(pg) if env_extra else []
        cpu0, db0 = cpu_seconds(watched), cpu_seconds(db_pids)
        began = time.perf_counter()
        await mosquitto_pub(url, f"{root}/events/image/created", data)
        await asyncio.wait_for(finished.wait(), 600)
        elapsed = seen[-1] - began
        db1 = cpu_seconds(postgres_pids(pg)) if env_extra else 0.0
        return {
            "rate": N / elapsed,
            "cpu_us": (cpu_seconds(watched) - cpu0) / N * 1e6,
            "db_cpu_us": (db1 - db0) / N * 1e6,
        }
    finally:
        proc.terminate()
        await proc.wait()
        await watch.stop()


async def measure() -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    pipes: dict[str, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="dovecote-bench-stores-") as d,
        private_broker() as broker,
    ):
        folder = Path(d)
        pg = PrivatePostgres(Path(tempfile.mkdtemp(prefix="dovecote-bench-pg-")), durable=True)
        pg.start()
        try:
            for _ in range(REPEATS):
                for kind in KINDS:
                    extra = (
                        {"DATABASE_URL": pg.new_database("awards")} if kind == "postgresql" else {}
                    )
                    runs[kind].append(await awards(broker.url, extra, folder, pg))
            for kind in KINDS:
                extra = database(kind, pg, "pipe")
                pipes[kind] = await pipeline.measure(extra)
        finally:
            pg.stop()
    return {"awards": runs, "pipeline": pipes}


def database(kind: str, pg: PrivatePostgres, name: str) -> dict[str, str]:
    """The services' setting for this kind: a fresh database on PostgreSQL, nothing for
    SQLite (each store's file under the data folder)."""
    return {"DATABASE_URL": pg.new_database(name)} if kind == "postgresql" else {}


def report(r: dict[str, Any]) -> None:
    heading(
        f"Points awards a second: {N:,} uploads in a QoS 1 burst, one points worker, "
        f"ledger on SQLite vs PostgreSQL (fsync on), median of {REPEATS}"
    )
    base = median([x["rate"] for x in r["awards"]["sqlite"]])
    for kind in KINDS:
        rows = r["awards"][kind]
        rate = median([x["rate"] for x in rows])
        cpu = median([x["cpu_us"] for x in rows])
        db = median([x["db_cpu_us"] for x in rows])
        server = f", PostgreSQL server {db:5.0f} µs" if kind == "postgresql" else ""
        print(
            f"  {kind:<11} {rate:8,.0f} awards/s  {rate / base:5.2f}x SQLite   "
            f"CPU an award: points {cpu:5.0f} µs{server}"
        )
    print("  goal: PostgreSQL >= 0.70x SQLite")
    heading("Upload -> thumbnail with the stores on SQLite vs PostgreSQL (bench.pipeline)")
    for kind in KINDS:
        p = r["pipeline"][kind]
        print(
            f"  {kind:<11} resized frame p50 {median(p['framed']):6.1f} ms   "
            f"thumbnail fetched p50 {median(p['shown']):6.1f} ms   ({len(p['framed'])} uploads)"
        )
