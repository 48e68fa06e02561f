"""A fresh session (the gateway's): empty when the worker starts, kept while it runs.

Issue 22: the gateway's clean session was, on RabbitMQ 3.10, a classic queue on one node;
that node lost, its client id could subscribe nowhere. Its session is now a persistent one
(a quorum queue on a cluster) that the worker clears when it starts and when it stops
cleanly. So what is published while its connection is lost reaches it when it is back,
and what was published while it was not running does not (no backlog of stale events for
its pages). On both brokers, the connection lost through a relay (tests/relay.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dovecote import Delivery, Service, handles
from dovecote import activity as act
from dovecote.config import Settings
from dovecote.worker import Worker
from dovecote_testing.plugin import Probe, TestBroker, wait_until
from tests.relay import Relay

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


class Fresh(Service):
    name = "fresh"
    fresh_session = True

    async def setup(self) -> None:
        self.seen: list[str] = []

    @handles("events/#", shared=False)
    async def on_event(self, activity: act.Activity, _: Delivery) -> None:
        self.seen.append(activity.id)


@pytest.fixture
async def relay(broker: TestBroker) -> AsyncIterator[Relay]:
    r = await Relay(broker.host, broker.port).start()
    yield r
    await r.stop()


def seen(w: Worker) -> list[str]:
    assert isinstance(w.service, Fresh)
    return w.service.seen


async def started(relay: Relay, root: str) -> Worker:
    settings = Settings.from_env(
        {"MQTT_URL": relay.url, "DOVECOTE_ROOT": root, "DOVECOTE_METRICS_INTERVAL": "0"}
    )
    w = Worker(Fresh, settings)
    await w.start()
    await asyncio.wait_for(w.conn.ready.wait(), 20)
    return w


async def test_kept_through_a_lost_connection_and_cleared_when_the_worker_starts(
    relay: Relay, probe: Probe, root: str
) -> None:
    def event() -> dict[str, object]:
        return act.new("Create", ADA, {"type": "Note"})

    w = await started(relay, root)
    first = event()
    probe.publish("events/fresh/note", first)
    await wait_until(lambda: first["id"] in seen(w), 10, "the first event")
    assert w.link.up

    await relay.block()  # the connection is lost; the session stays
    await wait_until(lambda: not w.link.up, 10, "the link down")
    while_lost = event()
    probe.publish("events/fresh/note", while_lost)
    assert await probe.conn.flush(10)
    await relay.unblock()
    await wait_until(lambda: while_lost["id"] in seen(w), 20, "what came while it was cut off")
    # Up once its subscriptions are granted again, which may come after the session's
    # queued messages: waited for, not assumed.
    await wait_until(lambda: w.link.up, 10, "the link up again")
    assert w.link.downs == 1

    await w.shutdown()  # a clean stop clears the session
    while_stopped = event()
    probe.publish("events/fresh/note", while_stopped)
    assert await probe.conn.flush(10)
    w = await started(relay, root)
    after = event()
    probe.publish("events/fresh/note", after)
    await wait_until(lambda: after["id"] in seen(w), 10, "an event after the start")

    w.conn.drop()  # a crash: nothing cleared at the stop...
    w.link.went_down()
    while_dead = event()
    probe.publish("events/fresh/note", while_dead)
    assert await probe.conn.flush(10)
    await asyncio.sleep(0.5)
    w2 = await started(relay, root)  # ... so the start clears it
    last = event()
    probe.publish("events/fresh/note", last)
    await wait_until(lambda: last["id"] in seen(w2), 10, "an event after the restart")
    await asyncio.sleep(0.5)  # a backlog would have come first
    assert seen(w2) == [last["id"]], "a backlog from before this worker started"
    assert while_stopped["id"] not in seen(w)
    await w2.shutdown()
