"""A rolling upgrade under load (issue 26): a pool of two points workers is replaced one
worker at a time by the next version, whose award gains an optional field, while uploads
stream in: 300 in make test, 1,000 in make chaos (``--chaos=long``).

Real processes on a real broker: the gateway, the notifier and points 1 and 2 from
services/, started once; the next version is tests/services/points_next (the same service,
pool and ledger, the next contract). Each swap is what a deploy does: SIGTERM to the old
worker, which finishes what it holds, then the new one under the same instance (the same
MQTT client id and session; on RabbitMQ the same pool queue). Then: every upload awarded
once, none lost, the new awards carry the new field, and the old gateway forwards them to a
browser's socket and parks nothing (nor does anyone else).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets

from dovecote import activity as act
from dovecote_testing.gateway import cookie_header, signed_in
from dovecote_testing.plugin import (
    Probe,
    ServiceProcess,
    StartService,
    TestBroker,
    wait_until,
)
from tests.chaos import FaultRow, Scale, record
from tests.fixtures import wait_http
from tests.test_gateway_process import Browserish

pytestmark = [pytest.mark.slow, pytest.mark.chaos]  # a row of the fault table

# Uploads, streamed over 15 s: 1,000 (~67 a second) in make chaos, 300 in make test (the same
# swaps at the same times, a third of the CPU). They come in bursts of 10, and each swap's
# SIGTERM follows a burst at once (work in flight): after a quarter of them, and after 56 %.
STREAMS = {"short": (300, 15.0), "long": (1000, 15.0)}
BURST = 10
SWAP_AT = (0.25, 0.56)
AWARDED = "events/points/awarded"


@dataclass
class Swap:
    instance: str
    stopped_at: int  # how many messages the probe had when the old worker got its SIGTERM
    sent: int  # uploads published then
    in_flight: int  # of those, not yet awarded (as far as the probe had seen) then
    seconds: float  # from SIGTERM to the new worker's Join
    during: int  # uploads published meanwhile
    joined_at: int  # how many messages the probe had when the new worker joined


def upload(url: str, person: dict[str, Any]) -> dict[str, Any]:
    """An ``events/image/created`` as the gateway publishes it (services/gateway/topics.py)."""
    image = f"{url}/images/{uuid.uuid4().hex}"
    obj: dict[str, Any] = {"type": "Image", "id": image, "url": image, "mediaType": "image/jpeg"}
    obj |= {"name": "upgrade", "width": 10, "height": 10, "size": 10, "attributedTo": person}
    return act.new("Create", person, obj)


def awards(probe: Probe, since: int = 0, until: int | None = None) -> list[dict[str, Any]]:
    """The awards the probe saw, of all it saw (or of its messages ``since`` to ``until``)."""
    topic = f"{probe.root}/{AWARDED}"
    return [orjson.loads(m.payload) for m in probe.messages[since:until] if m.topic == topic]


def ledger(path: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        return [(r[0], r[1]) for r in db.execute("SELECT cause, rule FROM awards")]
    finally:
        db.close()


async def swap(
    old: ServiceProcess, start_next: Callable[[str], ServiceProcess], probe: Probe, sent: set[str]
) -> Swap:
    """Replace one worker as a deploy does: SIGTERM, wait for it to end, start the next."""
    began = time.monotonic()
    stopped_at, count = len(probe.messages), len(sent)
    in_flight = count - len({a["object"]["cause"] for a in awards(probe)} & sent)
    assert await asyncio.to_thread(old.stop) == 0, old.log  # it finished what it held
    start_next(old.instance)
    await probe.wait_online("points", old.instance, timeout=30, restarted=True)
    took = time.monotonic() - began
    return Swap(
        old.instance, stopped_at, count, in_flight, took, len(sent) - count, len(probe.messages)
    )


async def test_a_pool_upgraded_one_worker_at_a_time_under_load_loses_and_doubles_nothing(
    broker: TestBroker,
    start_service: StartService,
    service_env: dict[str, str],
    probe: Probe,
    tmp_path: Path,
    scale: Scale,
) -> None:
    uploads, stream_seconds = STREAMS[scale.name]
    swap_after = [int(uploads * at) for at in SWAP_AT]
    points_db = tmp_path / "points.sqlite3"
    env = {"POINTS_DB": str(points_db), "IMAGES_DIR": str(tmp_path / "images")}
    pool = {**env, "DOVECOTE_POOL_SIZE": "2"}
    gateway = start_service("gateway", **env)
    notifier = start_service("notifier", **env)
    old = [start_service("points", DOVECOTE_INSTANCE=n, **pool) for n in ("1", "2")]

    def start_next(instance: str) -> ServiceProcess:
        return start_service("points_next", "tests.services", DOVECOTE_INSTANCE=instance, **pool)

    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz")
    for name, instance in (("gateway", "1"), ("notifier", "1"), ("points", "1"), ("points", "2")):
        await probe.wait_online(name, instance, timeout=30)
    # linus uploads; ada, who follows him, is told of each (the notifier asks the gateway).
    linus = {"type": "Person", "id": f"{url}/users/linus", "preferredUsername": "linus"}
    linus["followers"] = f"{linus['id']}/followers"
    async with await signed_in(url, "ada") as http:
        cookies = {"Cookie": cookie_header(http)}
    ws = url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(ws, additional_headers=cookies, max_size=None) as conn:
        page = Browserish(conn)
        await page.wait(lambda f: f.get("type") == "hello")

        sent: set[str] = set()
        swap_now = [asyncio.Event() for _ in swap_after]

        async def stream() -> None:
            start = time.monotonic()
            for n, first in enumerate(range(0, uploads, BURST)):
                await asyncio.sleep(
                    max(0.0, start + n * BURST * stream_seconds / uploads - time.monotonic())
                )
                for _ in range(BURST):
                    item = upload(url, linus)
                    probe.publish("events/image/created", item)
                    sent.add(item["id"])
                for event, after in zip(swap_now, swap_after, strict=True):
                    if first < after <= first + BURST:
                        event.set()

        async def upgrade() -> list[Swap]:
            swaps = []
            for worker, event in zip(old, swap_now, strict=True):
                await asyncio.wait_for(event.wait(), 60)
                swaps.append(await swap(worker, start_next, probe, sent))
            return swaps

        streaming = asyncio.create_task(stream())
        swaps = await upgrade()
        assert not streaming.done(), "the stream ended before both swaps: nothing tested after"
        await streaming

        def complete() -> bool:
            return {a["object"]["cause"] for a in awards(probe)} >= sent

        def on_page() -> list[dict[str, Any]]:
            return [f["activity"] for f in page.decoded() if f.get("topic", "").endswith(AWARDED)]

        await wait_until(complete, 60, "an award for every upload")
        await probe.wait_for("users/ada/notifications", count=uploads, timeout=60)
        await wait_until(lambda: len(on_page()) >= uploads, 30, "every award on the page")
        await asyncio.sleep(1.0)  # a second award, a late park, would show by now
        seen_on_page = on_page()

    # The ledger: one upload award per upload, none twice (its key is (cause, rule)).
    rows = ledger(points_db)
    causes = [c for c, _ in rows]
    published = awards(probe)
    by_id = {a["id"]: a["object"]["cause"] for a in published}
    record(
        FaultRow(
            f"rolling upgrade of a points pool of 2 during a stream of uploads ({broker.kind})",
            len(sent),
            len(rows),
            len(sent - set(causes)),
            len(causes) - len(set(causes)),
            len(published) - len(by_id),  # same-id copies of an award, which readers skip
        )
    )
    assert sorted(causes) == sorted(sent), "an upload lost or awarded twice"
    assert {r for _, r in rows} == {"upload"}
    # The bus: one award id per cause; a repeat would be the same id, which readers skip.
    assert sorted(by_id.values()) == sorted(sent)
    # The next version's awards carry the new field; the old ones' do not; after the second
    # swap every award is the next version's.
    new = [a for a in published if "awardedAt" in a["object"]]
    assert 0 < len(new) < uploads
    assert all(datetime.fromisoformat(a["object"]["awardedAt"]).tzinfo for a in new)
    assert not any("awardedAt" in a["object"] for a in awards(probe, 0, swaps[0].stopped_at))
    assert all("awardedAt" in a["object"] for a in awards(probe, swaps[-1].joined_at))
    assert awards(probe, swaps[-1].joined_at), "no award after the second swap"
    # The old gateway read every award, old and new, and forwarded each once, as it came.
    assert sorted(a["id"] for a in seen_on_page) == sorted(by_id)
    assert sum("awardedAt" in a["object"] for a in seen_on_page) == len({a["id"] for a in new})
    # Nobody parked anything: not the gateway, not the notifier, not either version of points.
    parked = [m.topic for m in probe.messages if m.topic.startswith(f"{probe.root}/deadletter/")]
    assert parked == []
    assert gateway.alive() and notifier.alive()
    for s in swaps:
        print(
            f"points.{s.instance}: SIGTERM after {s.sent} uploads, {s.in_flight} of them not "
            f"yet awarded; the next version online {s.seconds:.2f} s later, {s.during} "
            "uploads meanwhile"
        )
    print(f"{len(new)} of {uploads} awards by the next version")
