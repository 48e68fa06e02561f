"""The in-memory bus (dovecote_testing.memory): broker semantics, then real Workers on it.

No broker process: these run in `make check`. What they prove of a service holds on a real
broker only as far as the bus models it (its docstring says what it leaves out).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from dovecote import Delivery, Service, handles
from dovecote import activity as act
from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Message, Will
from dovecote_testing.memory import URL, MemoryBroker, MemoryBus, MemoryConnection
from dovecote_testing.plugin import wait_until
from services.builder import topics as builder_topics
from services.gateway import topics as gateway_topics

ADDRESS = parse_mqtt_url(URL)


def client(
    bus: MemoryBroker,
    client_id: str,
    got: list[Message] | None = None,
    *,
    clean: bool = True,
    will: Will | None = None,
    manual_ack: bool = False,
) -> MemoryConnection:
    sink = got if got is not None else []
    return bus.connect(
        ADDRESS,
        client_id,
        on_message=sink.append,
        clean_session=clean,
        will=will,
        manual_ack=manual_ack,
    )


async def online(*conns: MemoryConnection) -> None:
    for conn in conns:
        conn.start()
        await conn.wait_connected(1)


async def subscribed(conn: MemoryConnection, *filters: str) -> None:
    for f in filters:
        granted = conn.subscribe(f, 1)
        assert granted is not None
        assert await granted == [1]


async def settle() -> None:
    for _ in range(5):  # deliveries are one loop turn later; acks one more
        await asyncio.sleep(0)


def topics_of(got: list[Message]) -> list[str]:
    return [m.topic for m in got]


async def test_routing_follows_the_registry_s_matching() -> None:
    bus = MemoryBroker()
    got: list[Message] = []
    sub, pub = client(bus, "sub", got), client(bus, "pub")
    await online(sub, pub)
    await subscribed(sub, "r/events/+/started", "r/state/#")
    for topic in ("r/events/build/started", "r/events/build/stopped", "r/state/a/b", "r/x"):
        pub.publish(topic, b"{}", 1)
    await settle()
    assert topics_of(got) == ["r/events/build/started", "r/state/a/b"]
    with pytest.raises(Exception, match="wildcard"):
        bus.route(Message("r/events/#", b"{}", 1, False, 0))


async def test_overlapping_subscriptions_get_a_message_once() -> None:
    bus = MemoryBroker()
    got: list[Message] = []
    sub, pub = client(bus, "sub", got), client(bus, "pub")
    await online(sub, pub)
    await subscribed(sub, "r/#", "r/state/build")
    pub.publish("r/state/build", b"1", 1)
    await settle()
    assert topics_of(got) == ["r/state/build"]


async def test_a_retained_message_goes_to_every_new_subscription_until_cleared() -> None:
    bus = MemoryBroker()
    early: list[Message] = []
    late: list[Message] = []
    pub, first = client(bus, "pub"), client(bus, "first", early)
    await online(pub, first)
    await subscribed(first, "r/#")
    pub.publish("r/state/build", b"v1", 1, retain=True)
    await settle()
    assert [(m.payload, m.retain) for m in early] == [(b"v1", False)]  # live: flag cleared
    second = client(bus, "second", late)
    await online(second)
    await subscribed(second, "r/+/build")  # a wildcard gets it too (as Mosquitto does)
    await settle()
    assert [(m.topic, m.payload, m.retain) for m in late] == [("r/state/build", b"v1", True)]
    pub.publish("r/state/build", b"", 1, retain=True)  # cleared
    await settle()
    third: list[Message] = []
    await online(c := client(bus, "third", third))
    await subscribed(c, "r/#")
    await settle()
    assert third == [] and bus.retained == {}


async def test_the_last_will_goes_out_on_a_drop_not_on_a_clean_stop() -> None:
    bus = MemoryBroker()
    got: list[Message] = []
    watcher = client(bus, "watcher", got)
    will = Will("r/services/x/1", b"Leave", 1, True)
    crashing, leaving = client(bus, "a", will=will), client(bus, "b", will=will)
    await online(watcher, crashing, leaving)
    await subscribed(watcher, "r/services/+/+")
    await leaving.stop()
    await settle()
    assert got == []
    crashing.drop()
    await settle()
    assert [(m.topic, m.payload) for m in got] == [("r/services/x/1", b"Leave")]
    assert bus.retained == {"r/services/x/1": b"Leave"}


async def test_a_second_connection_with_the_same_client_id_takes_the_session_over() -> None:
    bus = MemoryBroker()
    got: list[Message] = []
    watcher = client(bus, "watcher", got)
    old = client(bus, "dup", will=Will("r/services/x/1", b"Leave"))
    await online(watcher, old)
    await subscribed(watcher, "r/#")
    await online(client(bus, "dup"))
    await settle()
    assert not old.connected.is_set() and topics_of(got) == ["r/services/x/1"]


async def test_a_share_gives_each_message_to_one_member() -> None:
    bus = MemoryBroker()
    one: list[Message] = []
    two: list[Message] = []
    a, b, pub = client(bus, "a", one), client(bus, "b", two), client(bus, "pub")
    await online(a, b, pub)
    await subscribed(a, "$share/g/r/events/#")
    await subscribed(b, "$share/g/r/events/#")
    for n in range(6):
        pub.publish("r/events/x", str(n).encode(), 1)
    await settle()
    assert len(one) == len(two) == 3
    assert sorted(m.payload for m in one + two) == [str(n).encode() for n in range(6)]


async def test_a_persistent_session_keeps_what_came_while_away_and_what_was_not_acked() -> None:
    bus = MemoryBroker()
    got: list[Message] = []
    worker = client(bus, "w", got, clean=False, manual_ack=True)
    pub = client(bus, "pub")
    await online(worker, pub)
    await subscribed(worker, "r/events/#")
    pub.publish("r/events/a", b"handled, never acked", 1)
    await settle()
    worker.drop()  # killed mid-handler
    pub.publish("r/events/b", b"while away", 1)
    pub.publish("r/events/c", b"qos 0: lost", 0)
    await settle()
    back: list[Message] = []
    again = client(bus, "w", back, clean=False, manual_ack=True)
    again.start()
    await again.wait_connected(1)
    await settle()
    assert [m.payload for m in back] == [b"handled, never acked", b"while away"]
    for m in back:
        again.ack(m.mid, m.qos)
    await again.stop()
    last: list[Message] = []
    await online(client(bus, "w", last, clean=False, manual_ack=True))
    await settle()
    assert last == [], "acknowledged: gone for good"


async def test_a_clean_session_starts_empty() -> None:
    bus = MemoryBroker()
    first = client(bus, "w", clean=True)
    await online(first, pub := client(bus, "pub"))
    await subscribed(first, "r/#")
    await first.stop()
    pub.publish("r/events/a", b"x", 1)
    got: list[Message] = []
    await online(client(bus, "w", got, clean=True))
    await settle()
    assert got == []


# --- real Workers on the in-memory bus ------------------------------------------------------


ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


class Counter(Service):
    """A test builder: counts the builds it starts (as the builder, it may publish the
    build's state); how it behaves is set per test."""

    name = "builder"
    behaviour: Callable[[], Any] | None = None

    async def setup(self) -> None:
        self.started: list[str] = []

    @handles(gateway_topics.BUILD_START)
    async def on_start(self, activity: gateway_topics.StartBuild, delivery: Delivery) -> None:
        behaviour = type(self).behaviour
        if behaviour is not None:
            await behaviour()
        self.started.append(activity.id)
        build = builder_topics.Build(
            type="Build", id=activity.id, name="b", state="running", progress=0
        )
        self.bus.publish(
            builder_topics.BUILD_STATE,
            builder_topics.BuildUpdated(
                **act.envelope(), type="Update", actor=self.bus.actor, object=build
            ),
        )


def started(service: Service) -> list[str]:
    assert isinstance(service, Counter)
    return service.started


@pytest.fixture(autouse=True)
def plain_counter() -> None:
    Counter.behaviour = None


async def test_a_worker_on_the_memory_bus_handles_and_publishes_like_on_a_broker(
    memory_bus: MemoryBus,
) -> None:
    worker = await memory_bus.start(Counter)
    join = memory_bus.probe.on("services/builder/1")[-1]
    assert join["type"] == "Join" and memory_bus.broker.retained  # presence, retained
    start = act.new("Start", ADA, {"type": "Build"})
    memory_bus.probe.publish("commands/builder/launch", start)  # no handler: parked
    memory_bus.probe.publish("commands/builder/start", start)
    [state] = await memory_bus.probe.wait_for("state/build", timeout=2)
    assert state["object"]["id"] == start["id"] and started(worker.service) == [start["id"]]
    [letter] = await memory_bus.probe.wait_for("deadletter/builder", timeout=2)
    assert "unknown command 'launch' for builder" in letter["summary"]
    # The state is retained: a late subscriber gets it first, as from a real broker.
    assert f"{memory_bus.root}/state/build" in memory_bus.broker.retained


async def test_bad_payloads_are_dead_lettered_with_the_reason(memory_bus: MemoryBus) -> None:
    await memory_bus.start(Counter)
    memory_bus.probe.publish("commands/builder/start", b"{not json")
    memory_bus.probe.publish("commands/builder/start", {"type": "Start"})
    letters = await memory_bus.probe.wait_for("deadletter/builder", count=2, timeout=2)
    reasons = sorted(letter["summary"] for letter in letters)
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1].startswith("not a valid StartBuild")


async def test_a_failing_handler_is_retried_then_parked(memory_bus: MemoryBus) -> None:
    async def fails() -> None:
        raise RuntimeError("disk full")

    Counter.behaviour = fails
    await memory_bus.start(Counter, DOVECOTE_HANDLER_ATTEMPTS="2")
    memory_bus.probe.publish("commands/builder/start", act.new("Start", ADA, {"type": "Build"}))
    [letter] = await memory_bus.probe.wait_for("deadletter/builder", timeout=5)
    assert "handler on_start failed: RuntimeError('disk full')" in letter["summary"]
    assert letter["object"]["attempts"] == 2


async def test_a_worker_killed_mid_handler_gets_the_message_again_when_it_returns(
    memory_bus: MemoryBus,
) -> None:
    """Ack after the handler, a persistent session and the Last Will, all on the bus."""
    hold = asyncio.Event()

    async def stuck() -> None:
        await hold.wait()

    Counter.behaviour = stuck
    first = await memory_bus.start(Counter)
    start = act.new("Start", ADA, {"type": "Build"})
    memory_bus.probe.publish("commands/builder/start", start)
    await wait_until(lambda: bool(first.dispatcher.tasks), 2, "the handler running")
    memory_bus.kill(first)
    [leave] = await memory_bus.probe.wait_for(
        "services/builder/1", lambda a: a["type"] == "Leave", timeout=2
    )
    assert leave["object"]["status"] == "offline"  # the will
    Counter.behaviour = None
    second = await memory_bus.start(Counter)  # the same instance: the same session
    await wait_until(lambda: started(second.service) == [start["id"]], 2, "the redelivery")
    assert started(first.service) == []
