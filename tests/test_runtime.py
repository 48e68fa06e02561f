"""The service runtime against a real private Mosquitto: delivery, dead letters, presence."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dovecote import Delivery, Service, Unprocessable, handles, letters, topics
from dovecote import activity as act
from dovecote.config import Settings, parse_mqtt_url
from dovecote.mqtt import Connection
from dovecote.project import PROJECT
from dovecote.reporting import readings
from dovecote.tools.broker import PrivateMosquitto, free_port
from dovecote.worker import Worker
from dovecote_testing.plugin import Probe, TestBroker, wait_until
from services.builder import topics as builder_topics
from services.gateway import topics as gateway_topics

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


def start_activity(**extra: Any) -> dict[str, Any]:
    return act.new("Start", ADA, {"type": "Build"}, **extra)


class Recording(Service):
    """A test service: records what its handlers got; behaviour set per test."""

    name = "recorder"
    eager_handlers = True  # the fast path; the Task path is tested by a subclass below
    seen: list[tuple[str, str]]
    behaviour: Callable[[Any], Any] | None = None

    async def setup(self) -> None:
        self.seen = []
        self.failures = 0

    @handles(gateway_topics.BUILD_START)
    async def on_start(self, activity: gateway_topics.StartBuild, delivery: Delivery) -> None:
        self.seen.append((activity.id, delivery.topic))
        behaviour = type(self).behaviour
        if behaviour is not None:
            await behaviour(self)

    @handles("events/#")
    async def on_event(self, activity: act.Activity, delivery: Delivery) -> None:
        self.seen.append((activity.id, delivery.topic))


@pytest.fixture
def settings(broker: TestBroker, root: str) -> Settings:
    return Settings.from_env(
        {"MQTT_URL": broker.url, "DOVECOTE_ROOT": root, "DOVECOTE_MAX_PAYLOAD": "4096"}
    )


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


def seen(w: Worker) -> list[tuple[str, str]]:
    svc = w.service
    assert isinstance(svc, Recording)
    return svc.seen


async def test_a_valid_activity_reaches_its_handler_typed(worker: Worker, probe: Probe) -> None:
    a = start_activity()
    probe.publish("commands/builder/start", a)
    await wait_until(lambda: len(seen(worker)) == 1, what="handler call")
    assert seen(worker)[0] == (a["id"], f"{probe.root}/commands/builder/start")


async def test_wildcard_handlers_decode_with_the_registry_type(
    worker: Worker, probe: Probe
) -> None:
    probe.publish("events/anything/new", act.new("Create", ADA, {"type": "Note"}))
    await wait_until(lambda: len(seen(worker)) == 1, what="wildcard handler call")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{this is not json", "malformed JSON"),
        (b'{"type": "Start"}', "not a valid StartBuild"),
        (b"\xff\xfe\x00binary", "malformed JSON"),
        (b'{"x": "' + b"a" * 5000 + b'"}', "over the 4096-byte limit"),
        # 1,500 levels in an `Any` field: msgspec's RecursionError, once uncaught (fuzz).
        (
            act.encode(start_activity(target=0)).replace(
                b'"target":0', b'"target":' + b"[" * 1500 + b"]" * 1500
            ),
            "nested too deeply",
        ),
    ],
)
async def test_bad_payloads_are_dead_lettered_with_the_reason(
    worker: Worker, probe: Probe, payload: bytes, reason: str
) -> None:
    probe.publish("commands/builder/start", payload)
    [letter] = await probe.wait_for("deadletter/recorder")
    assert reason in letter["summary"]
    parked = letter["object"]
    assert parked["name"] == f"{probe.root}/commands/builder/start"
    assert parked["size"] == len(payload)
    assert letter["type"] == "Flag" and letter["actor"]["name"] == "recorder"
    # ... and the service keeps going.
    good = start_activity()
    probe.publish("commands/builder/start", good)
    await wait_until(lambda: any(i == good["id"] for i, _ in seen(worker)), what="next message")


async def test_a_garbage_presence_query_is_counted_not_answered_nor_parked(
    worker: Worker, probe: Probe
) -> None:
    """Found by the fuzz run: anything on services/query made every worker republish. Then
    issue 11: every worker parked it, so a flood was stored once per service; the keeper of
    dead letters alone parks it now (tests/test_deadletters.py), the others count it."""
    # The retained Join reaches "#" on Mosquitto only (at once); RabbitMQ never sends it.
    with contextlib.suppress(AssertionError):
        await probe.wait_online("recorder", timeout=1)
    start = len(probe.messages)
    probe.publish("services/query", b"\x00garbage")
    question = act.new("Question", ADA, {"type": "Collection", "name": "services online"})
    probe.publish("services/query", question)  # answered after the garbage was dealt with
    await probe.wait_for("services/recorder/1", lambda a: a["type"] == "Join")
    await asyncio.sleep(0.3)  # a second answer would show by now
    since = [m.topic for m in probe.messages[start:]]
    assert since.count(f"{probe.root}/services/recorder/1") == 1, "garbage was answered"
    assert probe.on("deadletter/recorder") == [], "garbage parked by a service not the keeper"
    assert worker.state.refused == 1
    assert readings(worker.service, worker.state.refused)["queries_refused_total"] == 1


@pytest.mark.parametrize("char", [b"\x01", b"\xff", b"a"])
async def test_a_letter_fits_the_payload_limit_however_its_payload_encodes(
    worker: Worker, probe: Probe, char: bytes
) -> None:
    """Found by the fuzz run: control characters (6 bytes each in JSON) or bytes that are
    not UTF-8 (base64) made the letter of a payload at the limit too big to be kept."""
    payload = char * 4000  # under the 4096-byte limit: refused as malformed, not as big
    probe.publish("commands/builder/start", payload)
    await probe.wait_for("deadletter/recorder")
    [raw] = [m.payload for m in probe.messages if m.topic.endswith("/deadletter/recorder")]
    assert len(raw) <= 4096, "the deadletters service would refuse this letter"
    parked = topics.DEADLETTER.codec.decode(raw).object
    assert parked.size == 4000
    kept = letters.kept(parked)
    assert kept and payload.startswith(kept)


async def test_an_unknown_command_verb_is_dead_lettered(worker: Worker, probe: Probe) -> None:
    probe.publish("commands/recorder/explode", start_activity())
    [letter] = await probe.wait_for("deadletter/recorder")
    assert "unknown command 'explode'" in letter["summary"]


async def test_a_failing_handler_is_retried_then_parked_and_the_stream_goes_on(
    worker: Worker, probe: Probe
) -> None:
    async def explode(svc: Any) -> None:
        if len(svc.seen) <= 3:
            raise RuntimeError("boom")

    Recording.behaviour = explode
    poison = start_activity()
    probe.publish("commands/builder/start", poison)
    [letter] = await probe.wait_for("deadletter/recorder", timeout=10)
    assert letter["object"]["attempts"] == 3
    assert "boom" in letter["summary"]
    assert [i for i, _ in seen(worker)] == [poison["id"]] * 3
    after = start_activity()
    probe.publish("commands/builder/start", after)
    await wait_until(lambda: seen(worker)[-1][0] == after["id"], what="the next message")


async def test_an_unprocessable_message_is_parked_at_once_with_its_reason(
    worker: Worker, probe: Probe
) -> None:
    async def refuse(svc: Any) -> None:
        raise Unprocessable("http://gw/images/x: not an image")

    Recording.behaviour = refuse
    probe.publish("commands/builder/start", start_activity())
    [letter] = await probe.wait_for("deadletter/recorder", timeout=10)
    assert letter["summary"] == "http://gw/images/x: not an image"
    assert letter["object"]["attempts"] == 1 and len(seen(worker)) == 1  # no retries


async def test_handlers_run_inside_a_task_when_the_service_asks(settings: Settings) -> None:
    class Lazy(Recording):
        eager_handlers = False

    async def needs_a_task(svc: Any) -> None:
        assert asyncio.current_task() is not None  # aiohttp's timeouts need one
        async with asyncio.timeout(5):
            await asyncio.sleep(0)

    Recording.behaviour = needs_a_task
    w = Worker(Lazy, settings)
    await w.start()
    try:
        await w.conn.wait_connected(10)
        await asyncio.sleep(0.2)  # SUBACK
        probe = await Probe(settings.mqtt_url, settings.root).start()
        probe.publish("commands/builder/start", start_activity())
        await wait_until(lambda: len(seen(w)) == 1, what="the handler")
        await asyncio.sleep(0.5)
        assert len(seen(w)) == 1, "the first attempt failed and was retried"
        await probe.stop()
    finally:
        await w.shutdown()


async def test_a_handler_that_fails_once_succeeds_on_retry(worker: Worker, probe: Probe) -> None:
    async def flaky(svc: Any) -> None:
        await asyncio.sleep(0)  # suspends: exercises the task path, not the eager one
        if len(svc.seen) == 1:
            raise ConnectionError("transient")

    Recording.behaviour = flaky
    probe.publish("commands/builder/start", start_activity())
    await wait_until(lambda: len(seen(worker)) == 2, what="the retry")
    await asyncio.sleep(0.3)
    assert probe.on("deadletter/recorder") == []


async def test_the_same_activity_id_is_handled_once(worker: Worker, probe: Probe) -> None:
    a = start_activity()
    for _ in range(3):
        probe.publish("commands/builder/start", a)
    b = start_activity()
    probe.publish("commands/builder/start", b)
    await wait_until(lambda: any(i == b["id"] for i, _ in seen(worker)), what="the last one")
    assert [i for i, _ in seen(worker)] == [a["id"], b["id"]]


async def test_messages_published_while_a_worker_is_down_arrive_when_it_returns(
    settings: Settings, probe: Probe
) -> None:
    Recording.behaviour = None
    first = Worker(Recording, settings)
    await first.start()
    await first.conn.wait_connected(10)
    await asyncio.sleep(0.2)
    await first.shutdown()  # persistent session: the broker queues for it
    sent = [start_activity() for _ in range(5)]
    for a in sent:
        probe.publish("commands/builder/start", a)
    await probe.conn.flush()
    again = Worker(Recording, settings)
    await again.start()
    await wait_until(lambda: len(seen(again)) == 5, what="the queued messages")
    assert [i for i, _ in seen(again)] == [a["id"] for a in sent]
    await again.shutdown()


async def test_a_message_whose_handler_never_finished_is_redelivered(
    settings: Settings, probe: Probe
) -> None:
    hang = asyncio.Event()

    async def never(_: Any) -> None:
        await hang.wait()

    Recording.behaviour = never
    w = Worker(Recording, settings)
    await w.start()
    await w.conn.wait_connected(10)
    await asyncio.sleep(0.2)
    a = start_activity()
    probe.publish("commands/builder/start", a)
    await wait_until(lambda: len(seen(w)) == 1, what="first delivery")
    w.conn.drop()  # as if killed: the message was never acknowledged
    Recording.behaviour = None
    again = Worker(Recording, settings)
    await again.start()
    await wait_until(lambda: len(seen(again)) == 1, what="redelivery")
    assert seen(again)[0][0] == a["id"]
    hang.set()
    await again.shutdown()


async def test_presence_online_then_last_will_offline_then_graceful_offline(
    settings: Settings, probe: Probe
) -> None:
    w = Worker(Recording, settings)
    await w.start()
    await probe.wait_for("services/recorder/1", lambda a: a["type"] == "Join")
    w.conn.drop()
    [will] = await probe.wait_for("services/recorder/1", lambda a: a["type"] == "Leave", timeout=60)
    assert will["object"]["status"] == "offline"
    w2 = Worker(Recording, settings)
    await w2.start()
    await probe.wait_for("services/recorder/1", lambda a: a["type"] == "Join", count=2)
    await w2.shutdown()
    await probe.wait_for("services/recorder/1", lambda a: a["type"] == "Leave", count=2)


@pytest.mark.real_broker  # starts a private broker of its own
async def test_reconnects_after_a_broker_restart_and_loses_no_publish(
    tmp_path: Path, root: str
) -> None:
    own = PrivateMosquitto(tmp_path / "broker").start()
    try:
        settings = Settings.from_env({"MQTT_URL": own.url, "DOVECOTE_ROOT": root})
        Recording.behaviour = None
        w = Worker(Recording, settings)
        await w.start()
        await w.conn.wait_connected(10)
        watcher = await Probe(own.url, root, persistent=True).start("deadletter/#")
        own.stop()
        await wait_until(lambda: not w.conn.connected.is_set(), what="disconnect")
        # Published while the broker is down: kept by paho's queue, sent on reconnect.
        for n in range(3):
            parked = act.ParkedMessage(
                type="Object",
                name="t",
                mediaType="application/activity+json",
                content=str(n),
                size=1,
                attempts=0,
            )
            w.bus.publish(
                topics.DEADLETTER,
                act.DeadLetter(**act.envelope(), type="Flag", actor=w.bus.actor, object=parked),
                service="recorder",
            )
        own.start()
        await w.conn.wait_connected(30)
        await watcher.conn.wait_connected(30)
        assert w.conn.connects == 2
        await watcher.wait_for("deadletter/recorder", count=3, timeout=15)
        probe = await Probe(own.url, root).start()
        a = start_activity()
        probe.publish("commands/builder/start", a)
        await wait_until(
            lambda: seen(w)[-1:] == [(a["id"], f"{root}/commands/builder/start")],
            what="delivery after reconnect (resubscribed)",
        )
        await probe.stop()
        await watcher.stop()
        await w.shutdown()
    finally:
        own.stop()


@pytest.mark.real_broker  # starts a private broker of its own
async def test_a_stop_does_not_wait_for_acks_from_a_broker_that_went_away(
    tmp_path: Path, root: str
) -> None:
    """A worker orphaned with `dovecote run`'s private broker (both die with the supervisor)
    must not wait out the flush timeout for acknowledgements that can no longer come."""
    own = PrivateMosquitto(tmp_path / "broker").start()
    try:
        conn = Connection(parse_mqtt_url(own.url), f"{root}-stopper", on_message=lambda _: None)
        conn.start()
        await conn.wait_connected(10)
        assert own.process is not None
        os.kill(own.process.pid, signal.SIGSTOP)  # no PUBACK from now on
        conn.publish(f"{root}/events/x", b"{}", 1)
        stopping = asyncio.create_task(conn.stop(timeout=5))
        await asyncio.sleep(0.3)
        assert not stopping.done(), "waiting for the broker's acknowledgement"
        own.kill()
        lost = time.monotonic()
        await asyncio.wait_for(stopping, 10)
        assert time.monotonic() - lost < 1.0
    finally:
        own.stop()


@pytest.mark.real_broker  # starts a private broker of its own
async def test_a_connection_dropped_before_its_connack_is_retried_at_once(
    tmp_path: Path, root: str
) -> None:
    """A broker restarting under load accepts a connection and dies before answering it.
    That attempt is over: the next one follows with the backoff, not after waiting the
    keepalive (30 s) for a CONNACK that cannot come (the broker-restart test failed so)."""
    port = free_port()
    accepted = 0

    def hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.transport.abort()

    server = await asyncio.start_server(hang_up, "127.0.0.1", port)
    conn = Connection(
        parse_mqtt_url(f"mqtt://127.0.0.1:{port}"),
        f"{root}-early",
        on_message=lambda _: None,
        keepalive=30,
    )
    conn.start()
    own = None
    try:
        await wait_until(lambda: accepted >= 1, 10, "a first attempt, hung up on")
        server.close()
        await server.wait_closed()
        own = PrivateMosquitto(tmp_path / "broker", port=port).start()
        back = time.monotonic()
        await conn.wait_connected(10)
        assert time.monotonic() - back < 5
    finally:
        await conn.stop(1)
        if own is not None:
            own.stop()


def test_a_service_may_only_publish_its_own_topics(settings: Settings) -> None:
    from dovecote.service import Bus

    bus = Bus(lambda *a: None, "recorder", settings)
    build = builder_topics.Build(
        type="Build", id="urn:uuid:1", name="B", state="running", progress=0
    )
    state = builder_topics.BuildUpdated(
        **act.envelope(), type="Update", actor=bus.actor, object=build
    )
    with pytest.raises(topics.TopicError, match="may not publish"):
        bus.publish(builder_topics.BUILD_STATE, state)
    # What a type cannot say, the registry's decoder does: no negative attempts.
    parked = act.ParkedMessage(
        type="Object",
        name="t",
        mediaType="application/activity+json",
        content="",
        size=0,
        attempts=-1,
    )
    letter = act.DeadLetter(**act.envelope(), type="Flag", actor=bus.actor, object=parked)
    with pytest.raises(act.InvalidActivity, match="attempts"):
        bus.publish(topics.DEADLETTER, letter, service="recorder")


class Twice(Service):
    """Two handlers for one topic: the first always fails, the second must still run."""

    name = "twice"

    async def setup(self) -> None:
        self.calls: list[str] = []

    @handles(builder_topics.BUILD_STARTED)
    async def broken(self, activity: builder_topics.BuildCreated, delivery: Delivery) -> None:
        self.calls.append("broken")
        raise ValueError("always")

    @handles("events/build/#")
    async def fine(self, activity: act.Activity, delivery: Delivery) -> None:
        self.calls.append("fine")


async def test_every_handler_of_a_message_runs_even_when_one_keeps_failing(
    settings: Settings, probe: Probe
) -> None:
    w = Worker(Twice, settings)
    await w.start()
    await w.conn.wait_connected(10)
    await asyncio.sleep(0.2)
    build = {"type": "Build", "id": "urn:uuid:1", "name": "B", "state": "running", "progress": 0}
    probe.publish("events/build/started", act.new("Create", ADA, build))
    [letter] = await probe.wait_for("deadletter/twice")
    assert letter["object"]["attempts"] == 3
    assert "broken" in letter["summary"] and "always" in letter["summary"]
    svc = w.service
    assert isinstance(svc, Twice)
    assert sorted(svc.calls) == ["broken", "broken", "broken", "fine"]
    await w.shutdown()


async def test_copies_arriving_while_the_first_is_in_its_handler_are_not_handled_again(
    worker: Worker, probe: Probe
) -> None:
    """A pooled and a plain subscription can both deliver one message to a worker."""

    async def slow(_: Any) -> None:
        await asyncio.sleep(0.3)

    Recording.behaviour = slow
    a = start_activity()
    for _ in range(3):
        probe.publish("commands/builder/start", a)
    b = start_activity()
    probe.publish("commands/builder/start", b)
    await wait_until(lambda: any(i == b["id"] for i, _ in seen(worker)), what="the last one")
    await asyncio.sleep(0.5)
    assert sorted(i for i, _ in seen(worker)) == sorted([a["id"], b["id"]])
    assert worker.dispatcher._inflight == {}  # the waiting copies were acknowledged with the first


async def test_the_bus_socket_sends_each_write_at_once(probe: Probe) -> None:
    """TCP_NODELAY on every worker's socket (and ``set_tcp_nodelay`` in the project's
    Mosquitto configs): with Nagle, a question answered on the bus (a page's inbox) waited
    for delayed ACKs, 88 ms instead of 2 (docs/performance.md)."""
    assert isinstance(probe.conn, Connection)  # paho's, on a real broker
    buffered = probe.conn.socket.buffered
    assert buffered is not None
    raw = buffered.raw  # paho's socket, under the buffered wrapper
    assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    for conf in ("dev.conf", "production.conf"):
        text = (PROJECT / "deploy" / "mosquitto" / conf).read_text()
        assert "\nset_tcp_nodelay true\n" in text, conf


async def test_retained_state_with_a_parameter_reaches_a_wildcard_on_every_broker(
    start_service: Any, probe: Probe, broker: TestBroker
) -> None:
    """A card of a row per person subscribes state/<x>/+: RabbitMQ sends retained messages
    to exact subscriptions only, so a worker asked on services/query publishes again what
    it has retained on such topics since it started (the same activities: repeats)."""
    start_service("scores", package="tests.services")
    await probe.wait_online("scores")
    for user in ("ada", "grace"):
        probe.publish("events/scores/set", act.new("Set", ADA, {"type": "Note", "user": user}))
    published = [(await probe.wait_for(f"state/scores/{u}"))[0] for u in ("ada", "grace")]
    late = await Probe(broker.url, probe.root).start("state/scores/+")
    try:
        if broker.kind == "mosquitto":  # retained messages to a wildcard, at once
            for user in ("ada", "grace"):
                await late.wait_for(f"state/scores/{user}")
        else:
            await asyncio.sleep(0.5)  # (an absence: given the time the others took)
            assert late.messages == [], "RabbitMQ 3.10 sends no retained message to a +"
        question = act.new("Question", ADA, {"type": "Collection", "name": "services online"})
        probe.publish("services/query", question)
        again = [(await late.wait_for(f"state/scores/{u}"))[-1] for u in ("ada", "grace")]
        assert [a["id"] for a in again] == [a["id"] for a in published]
    finally:
        await late.stop()
