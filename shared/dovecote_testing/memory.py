"""An MQTT broker in the test's own event loop: real Workers and dispatch, no broker process.

For the fast loop (``make check``): a service's handlers run through a real ``Worker``
(capability check, subscriptions, presence, decoding, dedupe, retries, dead letters, acks)
on this bus instead of a socket. It keeps the broker semantics Dovecote relies on:

- routing by the registry's own matching (``dovecote.topics.matches``: ``+``, ``#``,
  ``$share/<group>/`` stripped, no wildcard match of ``$`` topics); a client with
  overlapping subscriptions gets a message once, at the highest QoS granted;
- ``$share/<group>/<filter>``: each message to one member of the group, online ones first;
- retained messages: the last one per topic, sent (retain flag set) to every new matching
  subscription, wildcards included (as Mosquitto does), cleared by an empty payload; live
  deliveries carry the flag cleared (MQTT 3.1.1 §3.3.1.3);
- the Last Will, published when a client goes without a DISCONNECT (``drop()``, as a
  ``kill -9`` would), never on a clean ``stop()``; a second connection with a client id
  already online takes it over (the first one's will goes out);
- persistent sessions (``clean_session=False``): subscriptions kept, QoS 1 messages queued
  while the client is away, and those delivered but not acknowledged sent again when it
  comes back; QoS 0 is never queued;
- delivery and acknowledgements one event-loop turn later, in order, as over a socket.

What it does not model: the network (no partitions, no slow consumers), message size
limits, ACLs, and whatever else differs between brokers (``docs/brokers.md``): a test on
``make test``'s private brokers stays the proof that a service works on a real one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dovecote.config import BrokerAddress, Settings
from dovecote.errors import BusError
from dovecote.mqtt import Message, Will
from dovecote.service import Service
from dovecote.topics import matches
from dovecote.transport import Connect
from dovecote.worker import Worker
from dovecote_testing.probe import Probe

URL = "mqtt://memory.invalid:1883"  # never dialled: the Settings of a test need a URL


@dataclass
class _Session:
    client_id: str
    persistent: bool
    subscriptions: dict[str, int] = field(default_factory=dict)  # filter -> granted QoS
    queued: deque[Message] = field(default_factory=deque)  # QoS 1 while away
    inflight: dict[int, Message] = field(default_factory=dict)  # sent, not yet acked
    mids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class MemoryBroker:
    """One broker: its sessions, its retained messages, and a log of what was published."""

    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}
        self.published: list[Message] = []  # every message, in the order it was routed
        self._sessions: dict[str, _Session] = {}
        self._online: dict[str, MemoryConnection] = {}
        self._turns: dict[str, int] = {}  # $share group -> round-robin position

    def connect(
        self,
        broker: BrokerAddress,
        client_id: str,
        *,
        on_message: Callable[[Message], None],
        clean_session: bool = False,
        keepalive: int = 30,
        will: Will | None = None,
        on_connected: Callable[[bool], None] | None = None,
        on_subscribed: Callable[[], None] | None = None,
        on_lost: Callable[[], None] | None = None,
        manual_ack: bool = True,
        quiet: bool = False,
    ) -> MemoryConnection:
        """A ``dovecote.transport.Connect``: give it to ``Worker`` or ``Probe``."""
        conn = MemoryConnection(
            self, broker, client_id, on_message, clean_session, will, on_connected, manual_ack
        )
        conn.on_subscribed, conn.on_lost = on_subscribed, on_lost
        return conn

    # --- sessions ------------------------------------------------------------------------

    def _attach(self, conn: MemoryConnection) -> bool:
        """A client connects; True if it resumes a session."""
        previous = self._online.get(conn.client_id)
        if previous is not None:
            previous._lost()  # take-over: the old connection goes as if dropped
        session = self._sessions.get(conn.client_id)
        present = session is not None and not conn.clean_session
        if session is None or conn.clean_session:
            session = _Session(conn.client_id, persistent=not conn.clean_session)
            self._sessions[conn.client_id] = session
        self._online[conn.client_id] = conn
        return present

    def _detach(self, conn: MemoryConnection, will: Will | None) -> None:
        if self._online.get(conn.client_id) is not conn:
            return
        del self._online[conn.client_id]
        session = self._sessions.get(conn.client_id)
        if session is not None and not session.persistent:
            del self._sessions[conn.client_id]
        if will is not None:
            self.route(Message(will.topic, will.payload, will.qos, will.retain, 0))

    def _resume(self, conn: MemoryConnection) -> None:
        """What a returning client missed: unacknowledged deliveries first, then the queue."""
        session = self._sessions[conn.client_id]
        for mid, msg in list(session.inflight.items()):
            conn._deliver(Message(msg.topic, msg.payload, msg.qos, False, mid))
        while session.queued:
            self._send(session, session.queued.popleft())

    def _subscribe(self, conn: MemoryConnection, topic_filter: str, qos: int) -> int:
        session = self._sessions[conn.client_id]
        session.subscriptions[topic_filter] = qos
        if not topic_filter.startswith("$share/"):  # no retained messages to a share
            for topic, payload in list(self.retained.items()):
                if matches(topic_filter, topic):
                    self._send(session, Message(topic, payload, min(qos, 1), True, 0))
        return qos

    def _unsubscribe(self, conn: MemoryConnection, filters: tuple[str, ...]) -> None:
        session = self._sessions[conn.client_id]
        for f in filters:
            session.subscriptions.pop(f, None)

    def _ack(self, conn: MemoryConnection, mid: int) -> None:
        session = self._sessions.get(conn.client_id)
        if session is not None:
            session.inflight.pop(mid, None)

    # --- routing -------------------------------------------------------------------------

    def route(self, msg: Message) -> None:
        """A message published by a client (or a will): retain it, then deliver it."""
        if any(level in ("+", "#") for level in msg.topic.split("/")):
            raise BusError(f"cannot publish to a topic with a wildcard: {msg.topic}")
        self.published.append(msg)
        if msg.retain:
            if msg.payload:
                self.retained[msg.topic] = msg.payload
            else:
                self.retained.pop(msg.topic, None)
        groups: dict[str, list[tuple[_Session, int]]] = {}
        for session in list(self._sessions.values()):
            best = -1
            for f, qos in session.subscriptions.items():
                if not matches(f, msg.topic):
                    continue
                if f.startswith("$share/"):
                    groups.setdefault(f.split("/", 2)[1] + "/" + f, []).append((session, qos))
                else:
                    best = max(best, qos)
            if best >= 0:
                self._send(session, Message(msg.topic, msg.payload, min(msg.qos, best), False, 0))
        for key, members in groups.items():
            online = [m for m in members if m[0].client_id in self._online] or members
            turn = self._turns.get(key, 0)
            self._turns[key] = turn + 1
            session, qos = online[turn % len(online)]
            self._send(session, Message(msg.topic, msg.payload, min(msg.qos, qos), False, 0))

    def _send(self, session: _Session, msg: Message) -> None:
        conn = self._online.get(session.client_id)
        if conn is None:
            if session.persistent and msg.qos > 0:
                session.queued.append(msg)
            return
        mid = next(session.mids) if msg.qos > 0 else 0
        delivery = Message(msg.topic, msg.payload, msg.qos, msg.retain, mid)
        if msg.qos > 0:
            session.inflight[mid] = delivery
        conn._deliver(delivery)


class MemoryConnection:
    """A client of a ``MemoryBroker``, with ``dovecote.mqtt.Connection``'s API."""

    def __init__(
        self,
        memory: MemoryBroker,
        broker: BrokerAddress,
        client_id: str,
        on_message: Callable[[Message], None],
        clean_session: bool,
        will: Will | None,
        on_connected: Callable[[bool], None] | None,
        manual_ack: bool,
    ) -> None:
        self.memory = memory
        self.broker = broker
        self.client_id = client_id
        self.clean_session = clean_session
        self.connected = asyncio.Event()
        self.ready = asyncio.Event()  # connected, subscriptions granted (one turn later)
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.on_subscribed: Callable[[], None] | None = None
        self.on_lost: Callable[[], None] | None = None
        self.connects = 0
        self.published = 0
        self._on_message = on_message
        self._on_connected = on_connected
        self._will = will
        self._manual_ack = manual_ack
        self._subscriptions: dict[str, int] = {}
        self._unsubscribe_on_connect: set[str] = set()
        self._outgoing: list[tuple[Message, Callable[[], None] | None]] = []  # while away
        self._unacked = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the Connection API --------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        self._loop.call_soon(self._connect)

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def wait_broken(self) -> BaseException:
        """Never: the in-memory bus has no connecting that could fail."""
        never: asyncio.Future[BaseException] = self._running_loop().create_future()
        return await never

    def subscribe(self, topic_filter: str, qos: int) -> asyncio.Future[list[int]] | None:
        self._subscriptions[topic_filter] = qos
        if not self.connected.is_set():
            return None
        loop = self._running_loop()
        granted: asyncio.Future[list[int]] = loop.create_future()
        loop.call_soon(self._suback, granted, topic_filter, qos)
        return granted

    def unsubscribe(self, *filters: str) -> None:
        for f in filters:
            self._subscriptions.pop(f, None)
        if self.connected.is_set():
            self.memory._unsubscribe(self, filters)
        else:
            self._unsubscribe_on_connect.update(filters)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_acked: Callable[[], None] | None = None,
    ) -> None:
        msg = Message(topic, bytes(payload), qos, retain, 0)
        self.published += 1
        if not self.connected.is_set():
            if qos > 0:  # as paho: QoS 1 waits for the connection, QoS 0 is lost
                self._outgoing.append((msg, on_acked))
                self._pending()
            return
        if qos > 0:
            self._pending()
        self._running_loop().call_soon(self._publish_now, msg, on_acked)

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0 and self.connected.is_set():
            self.memory._ack(self, mid)

    @property
    def unacknowledged(self) -> int:
        return self._unacked

    async def flush(self, timeout: float = 5.0) -> bool:
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 5.0) -> None:
        """A clean DISCONNECT: what was published goes first; no will."""
        if self.connected.is_set():
            await self.flush(timeout)
        self._stopped = True
        self.memory._detach(self, None)
        self._gone()

    def drop(self) -> None:
        """Gone without a DISCONNECT, as a killed process: the broker publishes the will."""
        self._stopped = True
        self._lost()

    # --- the broker's side ---------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _connect(self) -> None:
        if self._stopped or self.connected.is_set():
            return
        present = self.memory._attach(self)
        self.connects += 1
        self.connected.set()
        self.disconnected.clear()
        if self._unsubscribe_on_connect:  # before subscribing, as Connection does
            self.memory._unsubscribe(self, tuple(self._unsubscribe_on_connect))
            self._unsubscribe_on_connect.clear()
        for topic_filter, qos in self._subscriptions.items():
            self.memory._subscribe(self, topic_filter, qos)
        if self._on_connected is not None:
            self._on_connected(present)
        self._running_loop().call_soon(self._granted, self.connects)  # the SUBACK's turn
        self.memory._resume(self)
        outgoing, self._outgoing = self._outgoing, []
        for msg, on_acked in outgoing:
            self._publish_now(msg, on_acked)

    def _granted(self, connection: int) -> None:
        if connection != self.connects or not self.connected.is_set():
            return
        self.ready.set()
        if self.on_subscribed is not None:
            self.on_subscribed()

    def _suback(self, granted: asyncio.Future[list[int]], topic_filter: str, qos: int) -> None:
        if not self.connected.is_set():
            if not granted.done():
                granted.set_exception(BusError("disconnected before SUBACK"))
                granted.exception()  # as Connection: not logged when no one waits any more
            return
        result = self.memory._subscribe(self, topic_filter, qos)
        if not granted.done():
            granted.set_result([result])

    def _publish_now(self, msg: Message, on_acked: Callable[[], None] | None) -> None:
        if not self.connected.is_set():  # lost meanwhile: wait for the next connection
            if msg.qos > 0:
                self._outgoing.append((msg, on_acked))
            return
        self.memory.route(msg)
        if msg.qos > 0:
            if on_acked is not None:
                on_acked()
            self._acked()

    def _deliver(self, msg: Message) -> None:
        self._running_loop().call_soon(self._receive, msg)

    def _receive(self, msg: Message) -> None:
        if not self.connected.is_set():
            return  # sent just before it went: the session still holds it (QoS 1)
        self._on_message(msg)
        if not self._manual_ack:
            self.ack(msg.mid, msg.qos)

    def _pending(self) -> None:
        self._unacked += 1
        self._drained.clear()

    def _acked(self) -> None:
        self._unacked -= 1
        if self._unacked == 0:
            self._drained.set()

    def _lost(self) -> None:
        if self.connected.is_set():
            self.memory._detach(self, self._will)
        self._gone()

    def _gone(self) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.ready.clear()
        self.disconnected.set()
        if was_connected and self.on_lost is not None:
            self.on_lost()


def _is_a_connect(broker: MemoryBroker) -> Connect:
    return broker.connect  # mypy checks here that the bus makes what a Worker needs


class MemoryBus:
    """The ``memory_bus`` fixture: a broker, a fresh root, services as real Workers on it,
    and a probe (the same ``Probe`` as on a real broker) subscribed to the whole root."""

    def __init__(self, root: str, data_dir: Path) -> None:
        self.broker = MemoryBroker()
        self.root = root
        self.data_dir = data_dir
        self.workers: list[Worker] = []
        self.probe = Probe(URL, root, connect=self.broker.connect)

    def settings(self, **env: str) -> Settings:
        """What a worker of this bus reads: this root, stores in the test's own folder."""
        base = {"MQTT_URL": URL, "DOVECOTE_ROOT": self.root, "LOG_LEVEL": "DEBUG"}
        return Settings.from_env({**base, "DOVECOTE_DATA_DIR": str(self.data_dir), **env})

    async def start(self, service: type[Service], **env: str) -> Worker:
        """Run ``service`` as a real Worker on this bus (``DOVECOTE_INSTANCE=2`` for a second
        worker of a pool); it is online (its Join published) when this returns."""
        worker = Worker(service, self.settings(**env), connect=self.broker.connect)
        await worker.start()
        await worker.conn.wait_connected(5)
        self.workers.append(worker)
        await self.probe.wait_online(service.name, worker.settings.instance, timeout=5)
        return worker

    async def stop(self, worker: Worker) -> None:
        """As SIGTERM would: handlers finish, a Leave, a clean disconnect."""
        if worker in self.workers:
            self.workers.remove(worker)
            await worker.shutdown()

    def kill(self, worker: Worker) -> None:
        """As ``kill -9`` would: gone at once, handlers in flight unfinished (and so not
        acknowledged), its Last Will published by the broker."""
        if worker in self.workers:
            self.workers.remove(worker)
        worker.conn.drop()
        for task in worker.dispatcher.tasks:
            task.cancel()

    async def close(self) -> None:
        for worker in reversed(self.workers):
            await worker.shutdown()
        self.workers.clear()
        await self.probe.stop()
