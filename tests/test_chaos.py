"""The fault suite: the whole image pipeline under real traffic while faults are injected.

1. kill -9 of the resizer, notifier, points and tweeter, again and again, round robin,
   each started anew at once, while uploads (the gateway's HTTP API) and build results flow;
2. Mosquitto (persistence on) restarted in the middle of the stream, and during the outage
   the gateway killed with -9 right after answering an upload with 201.

Afterwards every effect is read from the real stores and the bus (``tests/chaos.py``) and
each row of the fault table must show nothing lost and nothing duplicated in effect.
``make test`` runs the short version, ``make chaos`` the long one (``--chaos=long``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from dovecote.tools.broker import PrivateMosquitto
from dovecote_testing.plugin import Probe, ServiceProcess, StartService, wait_until
from tests.chaos import NO_RATE_LIMITS, FaultRow, Killer, Scale, Traffic, Upload, record, settle
from tests.fixtures import wait_http

# Mosquitto only: each test runs its own (a restart must disturb no other test), and
# service_env comes from the session broker fixture, which would otherwise add RabbitMQ.
pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.brokers("mosquitto"),
]

WORKERS = ("resizer", "notifier", "points", "tweeter")


@dataclass
class Pipeline:
    url: str
    probe: Probe
    points_db: Path
    procs: dict[str, ServiceProcess]
    start: Callable[[str], ServiceProcess]


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[PrivateMosquitto]:
    """A Mosquitto for one test alone (the dev config: persistence on, saved every second),
    so that restarting it disturbs no other test."""
    b = PrivateMosquitto(tmp_path / "mosquitto").start()
    yield b
    b.stop()


async def pipeline_on(
    broker_url: str,
    root: str,
    start_service: StartService,
    service_env: dict[str, str],
    tmp_path: Path,
) -> Pipeline:
    env = {
        "MQTT_URL": broker_url,
        "DOVECOTE_SERVICE_TOKEN": secrets.token_urlsafe(24),
        "RESIZER_THREADS": "2",
        "LOG_LEVEL": "WARNING",  # thousands of messages: the logs say only what went wrong
        "DOVECOTE_POOL_SIZE": "1",  # as `dovecote run` says it (shared/dovecote/pool.py)
        **NO_RATE_LIMITS,
    }

    def start(name: str) -> ServiceProcess:
        return start_service(name, **env)

    # Persistent: what is published while the probe is cut off (a broker restart) is kept.
    probe = await Probe(broker_url, root, persistent=True).start("#")
    procs = {name: start(name) for name in (*WORKERS, "gateway")}
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz", 30)
    for name in procs:
        await probe.wait_online(name, timeout=60)
    return Pipeline(url, probe, tmp_path / "data" / "points.sqlite3", procs, start)


def conflicts(probe: Probe) -> list[bytes]:
    """Letters of a subscriber that met a different activity under an id it had handled:
    a publisher re-running a handler after a kill -9 must make the same activity again
    (only its `published` differs), a copy to skip (docs/operating.md)."""
    prefix = f"{probe.root}/deadletter/"
    return [
        m.payload[:400]
        for m in probe.messages
        if m.topic.startswith(prefix) and b"reuses the id" in m.payload
    ]


async def test_kill_9_every_service_again_and_again_under_load_loses_and_doubles_nothing(
    own_broker: PrivateMosquitto,
    root: str,
    start_service: StartService,
    service_env: dict[str, str],
    tmp_path: Path,
    scale: Scale,
) -> None:
    p = await pipeline_on(own_broker.url, root, start_service, service_env, tmp_path)
    try:
        traffic = Traffic(p.url, p.probe)
        await traffic.prepare()
        victims = {name: p.procs[name] for name in WORKERS}
        killer = Killer(victims, p.start, scale.kill_every)
        stop = asyncio.Event()
        killing = asyncio.get_running_loop().create_task(killer.run(stop))
        await traffic.run(scale.seconds, scale.uploads_per_s, scale.builds_per_s)
        stop.set()
        await killing
        assert sum(killer.kills.values()) >= len(WORKERS), killer.kills  # each one at least
        accounts = await settle(traffic, p.probe, p.points_db, killer.describe(), scale.settle)
        record(*accounts.rows())
        assert conflicts(p.probe) == []
    finally:
        await p.probe.stop()


async def test_a_broker_restart_mid_stream_and_a_gateway_killed_after_201_lose_nothing(
    own_broker: PrivateMosquitto,
    root: str,
    start_service: StartService,
    service_env: dict[str, str],
    tmp_path: Path,
    scale: Scale,
) -> None:
    p = await pipeline_on(own_broker.url, root, start_service, service_env, tmp_path)
    try:
        traffic = Traffic(p.url, p.probe)
        await traffic.prepare()
        during: list[Upload] = []
        outage = asyncio.Event()
        killed = asyncio.Event()

        def answered(upload: Upload) -> None:
            if outage.is_set() and not killed.is_set():
                during.append(upload)
                if len(during) >= 3:  # the broker has none of these: only the outbox has
                    killed.set()
                    p.procs["gateway"].kill()  # right after its 201, no time to say goodbye

        traffic.on_201 = answered
        flowing = asyncio.get_running_loop().create_task(
            traffic.run(scale.seconds, scale.uploads_per_s, scale.builds_per_s)
        )
        await asyncio.sleep(scale.seconds / 3)
        own_broker.stop()  # graceful: Mosquitto saves its sessions and queued messages
        outage.set()
        await asyncio.wait_for(killed.wait(), 30)
        p.procs["gateway"] = p.start("gateway")  # waits for the broker, then resends
        await asyncio.sleep(2.0)
        own_broker.start()
        await flowing
        await wait_http(f"{p.url}/healthz", 60)

        # Every service reconnected by itself: a second Join from the same process.
        for name in WORKERS:
            await p.probe.wait_for(
                f"services/{name}/1", lambda a: a["type"] == "Join", count=2, timeout=60
            )
            assert p.procs[name].alive(), f"{name} died"
        fault = "Mosquitto restarted mid-stream, gateway kill -9 after a 201 in the outage"
        accounts = await settle(traffic, p.probe, p.points_db, fault, scale.settle)

        # The uploads answered while the broker was away, the last one just before the kill.
        created: dict[str, set[str]] = {}
        for a in p.probe.on("events/image/created"):
            created.setdefault(a["id"], set()).add(a["object"]["id"])
        arrived = [u for u in during if u.activity in created]
        outbox = FaultRow(
            "outbox: uploads answered 201 while Mosquitto was down (gateway then killed)",
            len(during),
            len(arrived),
            len(during) - len(arrived),
            sum(len(created[u.activity]) - 1 for u in arrived),
            None,
        )
        record(outbox, *accounts.rows())
    finally:
        await p.probe.stop()


async def test_the_traffic_and_the_accounting_see_a_fault_they_are_not_told_about(
    own_broker: PrivateMosquitto,
    root: str,
    start_service: StartService,
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """The accounting can fail: with the notifier stopped for good, its row shows losses."""
    p = await pipeline_on(own_broker.url, root, start_service, service_env, tmp_path)
    try:
        traffic = Traffic(p.url, p.probe)
        await traffic.prepare()
        p.procs["notifier"].stop()
        await traffic.run(2.0, 5.0, 5.0)
        await wait_until(lambda: len(p.probe.on("events/tweet/created")) >= 1, 30, "a tweet")
        accounts = await settle(traffic, p.probe, p.points_db, "notifier stopped", 5.0)
        assert accounts.notifications.lost == accounts.notifications.sent > 0
        assert accounts.awards.lost == 0 and accounts.tweets.lost == 0
    finally:
        await p.probe.stop()
