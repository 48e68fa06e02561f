"""The durable outbox: what the gateway answered 201/202 for reaches the bus, whatever happens.

The hard case, on a real Mosquitto of the test's own (so it can be stopped): the broker is
down, the gateway answers an upload with 201 and a build command with 202, and is killed
with -9 at once. Broker and gateway come back; the events arrive, each once. A full outbox
refuses further uploads with 503 and stores nothing.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from dovecote.outbox import Outbox, OutboxFull
from dovecote.tools.broker import PrivateMosquitto
from dovecote_testing.gateway import token_for
from dovecote_testing.plugin import Probe, StartService, wait_until
from tests.fixtures import wait_http
from tests.imagefiles import photo


def test_outbox_keeps_what_was_not_acknowledged_across_a_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", limit=3)
    assert box.open() == []
    first = box.add("r/a", b"1", 1, False)
    box.add("r/b", b"2", 1, True)
    box.remove(first)
    box.add("r/c", b"3", 1, False)
    box.add("r/d", b"4", 1, False)
    with pytest.raises(OutboxFull, match="limit 3"):
        box.add("r/e", b"5", 1, False)
    box.close()  # as a crash would leave it: three rows never acknowledged

    again = Outbox(tmp_path / "o.sqlite3", limit=3)
    left = again.open()
    assert [(p.topic, p.payload, p.retain) for p in left] == [
        ("r/b", b"2", True),
        ("r/c", b"3", False),
        ("r/d", b"4", False),
    ]
    assert len(again) == 3
    for p in left:
        again.remove(p.seq)
    again.remove(left[0].seq)  # a second PUBACK for one row counts once
    assert len(again) == 0
    again.add("r/f", b"6", 1, False)
    again.close()


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[PrivateMosquitto]:
    """A Mosquitto for this test alone, with the project's dev config (persistence on)."""
    b = PrivateMosquitto(tmp_path / "mosquitto").start()
    yield b
    b.stop()


async def upload(url: str, token: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename="p.png", content_type="image/png")
    bearer = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/images", data=form, headers=bearer) as r,
    ):
        return r.status, dict(r.headers), await r.read()


def outbox_rows(folder: Path) -> int:
    files = list(folder.glob("*.sqlite3"))
    if not files:
        return -1
    db = sqlite3.connect(files[0])
    try:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


@pytest.mark.brokers("mosquitto")  # its own Mosquitto: once is enough
async def test_gateway_killed_after_201_and_202_while_the_broker_is_down_loses_nothing(
    own_broker: PrivateMosquitto,
    start_service: StartService,
    service_env: dict[str, str],
    root: str,
    tmp_path: Path,
) -> None:
    url = service_env["PUBLIC_URL"]
    env = {"MQTT_URL": own_broker.url, "DOVECOTE_OUTBOX_LIMIT": "2"}
    # Persistent: the broker keeps what is published for it while it is away too.
    probe = await Probe(own_broker.url, root, persistent=True).start("#")
    try:
        gateway = start_service("gateway", **env)
        await wait_http(f"{url}/healthz")
        await probe.wait_online("gateway")
        token = await token_for(url, "ada")

        own_broker.stop()  # graceful: saves its database, as a restart would
        status, _, body = await upload(url, token, photo(32, 24, fmt="PNG"))
        assert status == 201, body
        created = orjson.loads(body)
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
            http.post(f"{url}/api/builds", json={"shouldFail": False}) as r,
        ):
            assert r.status == 202, await r.text()
            command = await r.json()
        # Two events wait in an outbox of two: the next upload is refused, and not stored.
        status, headers, body = await upload(url, token, photo(32, 24, seed=2, fmt="PNG"))
        assert status == 503, body
        assert b"outbox" in body and headers.get("Retry-After") == "10"
        assert len(list((tmp_path / "data" / "images" / "originals").glob("*.json"))) == 1
        assert outbox_rows(tmp_path / "data" / "outbox") == 2

        gateway.kill()  # right after answering: paho's memory is gone, the outbox is not
        own_broker.start()
        start_service("gateway", **env)

        [image] = await probe.wait_for(
            "events/image/created", lambda a: a["id"] == created["activity"], timeout=60
        )
        assert image["object"]["url"] == created["url"]
        [start] = await probe.wait_for(
            "commands/builder/start", lambda a: a["id"] == command["id"], timeout=30
        )
        # The page's start as sent (no shouldFail: the contract's default, false, is left out)
        assert start["object"] == {"type": "Build"}, start["object"]
        await wait_until(
            lambda: outbox_rows(tmp_path / "data" / "outbox") == 0, 15, "an empty outbox"
        )
        assert len(probe.on("events/image/created")) == 1
        assert len(probe.on("commands/builder/start")) == 1
    finally:
        await probe.stop()
