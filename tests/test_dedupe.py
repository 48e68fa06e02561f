"""An activity id names one activity on one topic: what a worker does with a second message
that reuses one (docs/operating.md, "A second message with a handled id"), on a real broker.

The exact copies (a redelivery) are ``test_runtime.py``'s; here: a copy its publisher made
again later, a different activity on the same topic (from the same or another publisher,
handled already or still in its handler), the same id on another topic, and the fuzz run's
inputs that once were neither handled nor parked (issue 18).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from dovecote import activity as act
from dovecote import letters, topics
from dovecote.config import Settings
from dovecote.worker import Worker
from dovecote_testing.plugin import Probe, TestBroker, wait_until
from tests import hostile
from tests.hostile import envelope
from tests.test_runtime import Recording, seen, start_activity

GRACE = {"type": "Person", "id": "http://localhost:8080/users/grace", "name": "Grace"}
START = "commands/builder/start"


@pytest.fixture
def settings(broker: TestBroker, root: str) -> Settings:
    return Settings.from_env({"MQTT_URL": broker.url, "DOVECOTE_ROOT": root})


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    Recording.behaviour = None
    w = Worker(Recording, settings)
    await w.start()
    await w.conn.wait_connected(10)
    await w.conn.flush()
    await asyncio.sleep(0.1)  # SUBACK
    yield w
    await w.shutdown()


@pytest.fixture
async def intruder(broker: TestBroker, root: str) -> AsyncIterator[Probe]:
    """Another publisher: its own connection (no ACL on a test broker stops it)."""
    other = await Probe(broker.url, root).start()
    yield other
    await other.stop()


async def handled(w: Worker, probe: Probe, activity_id: str, topic: str) -> None:
    """Wait until the worker handled ``activity_id`` on ``topic``, then for a marker sent
    after everything else: what was to happen before it has happened."""
    await wait_until(
        lambda: (activity_id, f"{probe.root}/{topic}") in seen(w), what=f"{activity_id} handled"
    )
    marker = start_activity()
    probe.publish(START, marker)
    await wait_until(lambda: any(i == marker["id"] for i, _ in seen(w)), what="the marker")


def parked(probe: Probe) -> list[dict[str, Any]]:
    return probe.on("deadletter/recorder")


def content(letter: dict[str, Any]) -> bytes:
    """The payload a dead letter (as the probe decoded it) holds."""
    return letters.kept(topics.DEADLETTER.codec.decode(orjson.dumps(letter)).object)


async def test_a_copy_its_publisher_made_again_later_is_skipped(
    worker: Worker, probe: Probe
) -> None:
    """A derived id: a crash before the ack makes the same activity again, later."""
    a = start_activity()
    probe.publish(START, a)
    probe.publish(START, {**a, "published": "2099-01-01T00:00:00.000Z"})
    await handled(worker, probe, a["id"], START)
    assert [i for i, _ in seen(worker)].count(a["id"]) == 1
    assert parked(probe) == []


async def test_a_different_activity_reusing_a_handled_id_on_the_topic_is_parked(
    worker: Worker, probe: Probe, intruder: Probe
) -> None:
    a = start_activity()
    probe.publish(START, a)
    await handled(worker, probe, a["id"], START)
    mine = {**a, "object": {"type": "Build", "name": "again"}}
    theirs = {**a, "actor": GRACE}  # another publisher, another actor, the same id
    probe.publish(START, mine)
    intruder.publish(START, theirs)
    got = await probe.wait_for("deadletter/recorder", count=2)
    assert sorted(orjson.loads(content(g))["actor"]["name"] for g in got) == ["Ada", "Grace"]
    for letter in got:
        assert f"reuses the id {a['id']}" in letter["summary"]
        assert letter["object"]["name"] == f"{probe.root}/{START}"
    assert [i for i, _ in seen(worker)].count(a["id"]) == 1


async def test_an_id_handled_on_another_topic_never_suppresses_this_one(
    worker: Worker, probe: Probe, intruder: Probe
) -> None:
    """The way to suppress an event that per-topic memory closes: anyone may publish on an
    open topic (``events/#`` of a new service); its id is no longer skipped elsewhere."""
    genuine = start_activity()
    decoy = act.new("Create", GRACE, {"type": "Note"})
    decoy["id"] = genuine["id"]
    intruder.publish("events/fuzz/unregistered", decoy)
    await handled(worker, probe, genuine["id"], "events/fuzz/unregistered")
    probe.publish(START, genuine)
    await handled(worker, probe, genuine["id"], START)
    assert parked(probe) == []


async def test_a_different_activity_arriving_while_the_first_is_in_its_handler_is_parked(
    worker: Worker, probe: Probe
) -> None:
    release = asyncio.Event()

    async def held(_: Any) -> None:
        await release.wait()

    Recording.behaviour = held
    a = start_activity()
    probe.publish(START, a)
    await wait_until(lambda: len(seen(worker)) == 1, what="the first in its handler")
    probe.publish(START, a)  # a copy: waits for the first
    probe.publish(START, {**a, "object": {"type": "Build", "name": "other"}})
    [letter] = await probe.wait_for("deadletter/recorder")
    assert f"reuses the id {a['id']}" in letter["summary"]
    assert len(worker.dispatcher._inflight[(f"{probe.root}/{START}", a["id"])][1]) == 1
    Recording.behaviour = None
    release.set()
    await wait_until(lambda: worker.dispatcher._inflight == {}, what="the copy acknowledged")
    assert [i for i, _ in seen(worker)] == [a["id"]]


# The fuzz run of issue 18 (seed 1525476350): hostile inputs that broke no rule after all
# (hypothesis draws strings from the code's own literals: an actor of type "Application", a
# `published` written with "+00:00"), all under the envelope's one id, on a topic taken with
# the generic payload type. The first was handled; the others were skipped as its copies:
# neither handled nor parked. Now a different activity is parked, and only a copy (the same
# activity, however its time is written) is skipped.
def fuzz_input(actor_type: str = "Person", published: str | None = None) -> bytes:
    a = envelope()
    a["actor"]["type"] = actor_type
    a["published"] = published or a["published"]
    return orjson.dumps(a)


async def test_the_fuzz_inputs_that_were_neither_handled_nor_parked(
    worker: Worker, probe: Probe
) -> None:
    different = [fuzz_input(t) for t in ("Person", "Application", "Service", "Group")]
    copy = fuzz_input(published="2026-11-28T00:00:00.000+00:00")
    assert len(different[1]) == len(copy) == 281  # the size of the inputs
    topic = "events/fuzz/unregistered"
    for payload in [*different, copy]:
        probe.publish(topic, payload)
    first = act.Codec(act.Activity).decode(different[0]).id
    await handled(worker, probe, first, topic)
    got = await probe.wait_for("deadletter/recorder", count=len(different) - 1)
    assert sorted(content(g) for g in got) == sorted(different[1:])
    assert all("reuses the id" in g["summary"] for g in got)
    assert [i for i, t in seen(worker) if t.endswith(topic)] == [first]
    assert worker.dispatcher.meter.skipped == 1  # the copy


def test_the_fuzz_draws_no_input_that_some_payload_type_takes() -> None:
    """The other half of issue 18: the generator's promise (every bus input is hostile)
    is checked, not assumed; a payload type that takes one of these is no hostile input."""
    for payload in (fuzz_input(t) for t in ("Person", "Application", "Service", "Group")):
        assert hostile.accepted_somewhere(payload), payload
    broken = envelope()
    broken["actor"]["type"] = "Robot"
    assert not hostile.accepted_somewhere(orjson.dumps(broken))
    assert not hostile.accepted_somewhere(b"[]") and not hostile.accepted_somewhere(b"\xff")
