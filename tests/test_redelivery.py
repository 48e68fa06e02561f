"""Issue 11: a service redelivers only a dead letter it parked itself, unchanged, once.

The attack: the deadletters login may write every service's ``commands/<service>/redeliver``;
five letters it made up, naming ``events/image/created``, had points award +10 five times
to a person who does not exist, though that login may not write the upload event itself.
Here the same letters, and genuine ones altered or replayed twice, go to a real points
process on a real broker: each is refused and parked with the reason; nothing is awarded.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from pathlib import Path
from typing import Any

import pytest

from dovecote import activity as act
from dovecote import letters, redelivery
from dovecote.store import Place
from dovecote_testing.plugin import MemoryBus, Probe, StartService, TestBroker
from services.points.ledger import Ledger
from services.points.service import Points
from tests.chaos import FaultRow, record

DEADLETTERS = act.service("deadletters")
POINTS = act.service("points")
LIMIT = 256 * 1024


def upload(web: str, user: str) -> dict[str, Any]:
    """An upload event as the gateway publishes it: +10 to ``user`` if points runs it."""
    url = f"{web}/images/{uuid.uuid4().hex}"
    image: dict[str, Any] = {"type": "Image", "id": url, "url": url, "name": "x"}
    image |= {"mediaType": "image/jpeg", "width": 10, "height": 10, "size": 10}
    person = {"type": "Person", "id": f"{web}/users/{user}", "preferredUsername": user}
    return act.new("Create", person, image, context=f"urn:uuid:{uuid.uuid4()}")


def command(letter: act.DeadLetter | dict[str, Any]) -> dict[str, Any]:
    """The redelivery command the deadletters service would send for ``letter``."""
    return act.new("Undo", DEADLETTERS, letter)


def with_payload(letter: dict[str, Any], payload: bytes) -> dict[str, Any]:
    altered = copy.deepcopy(letter)
    altered["object"] |= {"content": payload.decode(), "size": len(payload)}
    return altered


def refusals(probe: Probe) -> list[dict[str, Any]]:
    """Letters points parked about a redelivery command (the refused ones)."""
    return [
        a
        for a in probe.on("deadletter/points")
        if a["object"]["name"].endswith("/commands/points/redeliver")
    ]


async def test_points_refuses_forged_altered_and_replayed_letters_and_awards_nothing(
    broker: TestBroker,
    start_service: StartService,
    service_env: dict[str, str],
    probe: Probe,
    tmp_path: Path,
) -> None:
    web = service_env["PUBLIC_URL"]
    points_db = tmp_path / "points.sqlite3"
    points_env = {"POINTS_DB": str(points_db), "DOVECOTE_HANDLER_ATTEMPTS": "1"}
    points = start_service("points", **points_env)
    await probe.wait_online("points")
    created = f"{probe.root}/events/image/created"

    # A genuine letter: garbage on the upload topic, which points parks and signs.
    probe.publish("events/image/created", b"not an activity")
    [genuine] = await probe.wait_for("deadletter/points")
    assert genuine["object"]["name"] == created and len(genuine["signature"]) == 64

    ghost = [upload(web, f"ghost{n}") for n in range(7)]
    sent: list[tuple[str, dict[str, Any]]] = []
    # 1. Made up by the sender, as in the attack: no signature at all (5 of them) ...
    for event in ghost[:5]:
        flag = letters.letter(POINTS, created, act.encode(event), "made up", 0, LIMIT)
        sent.append(("unsigned", command(flag)))
    # ... and one signed with a key that is not points'.
    wrong = letters.letter(
        POINTS,
        created,
        act.encode(ghost[5]),
        "made up",
        0,
        LIMIT,
        lambda i, t, p: redelivery.signature(b"k" * 64, "points", i, t, p),
    )
    sent.append(("signature does not match", command(wrong)))
    # 2. The genuine letter with an upload in place of its payload.
    payload = with_payload(genuine, act.encode(ghost[6]))
    sent.append(("signature does not match", command(payload)))
    # 3. The genuine letter moved to another topic points handles.
    moved = copy.deepcopy(genuine)
    moved["object"]["name"] = f"{probe.root}/events/build/succeeded"
    sent.append(("signature does not match", command(moved)))
    for _, forged in sent:
        probe.publish("commands/points/redeliver", forged)
    await probe.wait_for(
        "deadletter/points",
        lambda a: a["object"]["name"].endswith("/redeliver"),
        count=len(sent),
    )

    # 4. The genuine letter replayed twice: the first runs (the garbage is parked anew,
    # with a new letter), the second is refused; the first command's copy is skipped.
    first = command(genuine)
    probe.publish("commands/points/redeliver", first)
    await probe.wait_for("deadletter/points", lambda a: "malformed JSON" in a["summary"], count=2)
    probe.publish("commands/points/redeliver", first)  # a copy: absorbed, not parked
    again = command(genuine)
    sent.append(("redelivered already", again))
    probe.publish("commands/points/redeliver", again)
    await probe.wait_for(
        "deadletter/points",
        lambda a: a["object"]["name"].endswith("/redeliver"),
        count=len(sent),
    )
    # The record outlives the worker: restarted, points skips a copy of the first command
    # (it ran once) and refuses a third replay.
    assert await asyncio.to_thread(points.stop) == 0
    await probe.wait_for("services/points/1", lambda a: a["type"] == "Leave")
    start_service("points", **points_env)
    await probe.wait_for("services/points/1", lambda a: a["type"] == "Join", count=2)
    probe.publish("commands/points/redeliver", first)
    third = command(genuine)
    sent.append(("redelivered already", third))
    probe.publish("commands/points/redeliver", third)
    await probe.wait_for(
        "deadletter/points",
        lambda a: a["object"]["name"].endswith("/redeliver"),
        count=len(sent),
    )
    assert len(probe.on("deadletter/points")) == 1 + 1 + len(sent)  # nothing ran again

    # A real upload goes through: points was listening all along.
    real = upload(web, "ada")
    probe.publish("events/image/created", real)
    [award] = await probe.wait_for("events/points/awarded")
    assert award["object"]["cause"] == real["id"]

    refused = refusals(probe)
    assert len(refused) == len(sent), [r["summary"] for r in refused]
    for (why, forged), letter in zip(sent, refused, strict=True):
        assert why in letter["summary"], (why, letter["summary"])
        assert letter["object"]["content"] == act.encode(forged).decode()
    awards = probe.on("events/points/awarded")
    ledger = Ledger(Place.file(points_db)).open()
    try:
        awarded = ledger.count()
    finally:
        ledger.close()
    assert awarded == 1 and len(awards) == 1  # the real upload's, and nothing else
    record(
        FaultRow(
            "forged redeliveries: made up, re-signed, payload or topic altered, replayed "
            f"twice; refused and parked ({broker.kind})",
            len(sent),
            len(refused),
            len(sent) - len(refused),
            len(awards) - 1,  # forged effects: awards beyond the real upload's
        )
    )


@pytest.mark.brokers("mosquitto")
async def test_a_letter_on_a_topic_the_service_does_not_handle_is_not_redelivered(
    memory_bus: MemoryBus,
) -> None:
    """Signed, unchanged, but its topic is one points never handles (an unknown command to
    it): refused as such, not run as if it came from there. Logic, not wiring: a real
    points Worker on the in-memory bus (the fast loop)."""
    await memory_bus.start(Points, DOVECOTE_HANDLER_ATTEMPTS="1")
    probe = memory_bus.probe
    probe.publish("commands/points/reset", b"not an activity")
    [letter] = await probe.wait_for("deadletter/points")
    assert "unknown command 'reset'" in letter["summary"]
    probe.publish("commands/points/redeliver", command(letter))
    [refused] = await probe.wait_for(
        "deadletter/points", lambda a: a["object"]["name"].endswith("/redeliver")
    )
    assert "points does not handle it" in refused["summary"]
