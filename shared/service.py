"""The service runtime: decorated handlers, delivery guarantees, presence, lifecycle.

A service is a class with async handlers marked by ``@handles(topic)``. The decorator only
registers (it does not wrap), so a test calls ``await service.on_start(activity, delivery)``
directly. ``run(ServiceClass)`` is the whole ``__main__`` of a service; the ``Worker`` it
starts gives every handler the same guarantees:

- payloads are size-checked and decoded+validated against the topic's type before a handler
  sees them; what fails is parked on ``deadletter/<service>`` with the reason, and acked;
- QoS 1 messages are acknowledged only after their handler finished, so a killed worker gets
  them again from its persistent session (at least once) ...
- ... and handlers run at most once per activity ``id`` while the worker lives (a bounded
  memory of ids, and a copy arriving while the first is still being handled waits for it),
  which with an idempotent store makes the effect exactly once;
- N workers of a service form a pool: ``shared=True`` handlers get each message in one
  worker only (``shared.pool``), after a start-up check of what the broker really delivers
  (``shared.capabilities``);
- a handler that raises is retried a bounded number of times, then dead-lettered; it never
  takes the service down. A handler that knows retrying cannot help (a corrupt image, a
  404) raises ``Unprocessable`` and the message is dead-lettered at once with that reason.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from shared import activity as act
from shared import capabilities, pool, topics
from shared.broker import PROJECT
from shared.capabilities import Capabilities
from shared.config import ConfigError, Settings
from shared.logs import setup_logging
from shared.mqtt import BusError, Connection, Message, Will
from shared.outbox import Outbox
from shared.topics import Topic

Handler = Callable[[Any, "Delivery"], Coroutine[Any, Any, None]]
F = TypeVar("F", bound=Callable[..., Awaitable[None]])

_MARK = "__dovecote_handles__"
_SEEN_IDS = 20_000  # per worker; redeliveries arrive within seconds, not after 20k messages
_RETRY_DELAY = 0.2  # seconds before the 2nd attempt, doubling after


class Unprocessable(Exception):
    """Raised by a handler for a message that no retry can fix; ``str()`` is the reason."""


def handles(*targets: Topic | str, shared: bool = True) -> Callable[[F], F]:
    """Mark a method as the handler of one or more topics.

    A target is a registry ``Topic`` (its parameters become ``+``) or a filter relative to
    the root such as ``"events/#"``. ``shared=True`` (the default): the workers of a pool
    share these messages, each is handled by one of them. ``shared=False``: every worker gets
    every message (commands aimed at whichever worker holds something, state it must know).
    """

    def mark(fn: F) -> F:
        bindings = getattr(fn, _MARK, ())
        setattr(fn, _MARK, (*bindings, *((t, shared) for t in targets)))
        return fn

    return mark


@dataclass(frozen=True, slots=True)
class Delivery:
    """How an activity arrived: the concrete topic, its parameters and the original bytes."""

    topic: str
    params: dict[str, str]
    payload: bytes
    retained: bool
    entry: Topic | None

    @classmethod
    def of(
        cls,
        root: str,
        entry: Topic,
        activity: dict[str, Any],
        retained: bool = False,
        **params: str,
    ) -> Delivery:
        """A delivery as the runtime would make it; for calling handlers in unit tests."""
        return cls(entry.address(root, **params), params, act.encode(activity), retained, entry)


Send = Callable[[str, bytes, int, bool], None]  # topic, payload, qos, retain


class Bus:
    """What a service may do on the bus: publish registered topics, as itself.

    ``durable`` sends through the worker's outbox (``shared.outbox``), for services that set
    ``Service.outbox``: what was promised outside the bus (a 201, a 202) survives a crash.
    """

    def __init__(
        self, send: Send, service: str, settings: Settings, durable: Send | None = None
    ) -> None:
        self._send = send
        self._durable = durable
        self.service = service
        self.settings = settings
        self.root = settings.root
        self.instance = settings.instance
        self.actor = act.service_actor(service)

    def address(self, entry: Topic, **params: str) -> str:
        return entry.address(self.root, **params)

    def publish(
        self, entry: Topic, activity: dict[str, Any], *, durable: bool = False, **params: str
    ) -> bytes:
        """Validate against the registry, encode with orjson, and send. Returns the bytes.

        ``durable=True``: written to the outbox first; ``OutboxFull`` (a ``BusError``) when it
        is full, and nothing is sent.
        """
        if entry.publisher not in ("*", self.service):
            raise topics.TopicError(
                f"{self.service} may not publish {entry.pattern} (publisher: {entry.publisher})"
            )
        payload = act.encode(activity)
        entry.codec.decode(payload)  # a bug here must fail loudly, not reach subscribers
        send = self._send
        if durable:
            if self._durable is None:
                raise BusError(f"{self.service} has no outbox: set `outbox = True` on it")
            send = self._durable
        send(entry.address(self.root, **params), payload, entry.qos, entry.retain)
        return payload


class Service:
    """Base class of every service. Subclasses set ``name`` and add ``@handles`` methods."""

    name: ClassVar[str]
    # A persistent session keeps QoS 1 messages while the worker is down. A service whose
    # state is rebuilt from retained topics (the gateway) can use a clean one instead.
    clean_session: ClassVar[bool] = False
    # Each message's handler runs in its own asyncio Task. A service whose handlers rarely
    # await (the gateway forwarding bytes, SQLite writes) may start them eagerly on the
    # message's own callback instead: no Task and no loop turn per message, but no
    # ``asyncio.current_task()`` before the first suspension, so ``asyncio.timeout()`` and
    # aiohttp's client timeouts fail there. Safe by default, fast by choice.
    eager_handlers: ClassVar[bool] = False
    # A durable outbox (``shared.outbox``) for ``bus.publish(..., durable=True)``: for what a
    # service promised outside the bus before the broker acknowledged it (the gateway's 201).
    outbox: ClassVar[bool] = False

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.log = logging.getLogger(f"dovecote.{self.name}")

    async def setup(self) -> None:
        """Open resources (stores, HTTP sessions, servers) before the first message."""

    async def teardown(self) -> None:
        """Release resources; may still publish (the connection closes after this)."""

    @classmethod
    def handled(cls) -> list[tuple[str, Topic | None, bool, str]]:
        """(filter relative to root, registry entry or None, shared, handler's name): what
        the handlers of this class listen to, known without an instance (tools, the fuzz)."""
        found: list[tuple[str, Topic | None, bool, str]] = []
        for attr in dir(cls):
            fn = getattr(cls, attr, None)
            for target, shared in getattr(fn, _MARK, ()):
                if isinstance(target, Topic):
                    found.append((target.relative_filter, target, shared, attr))
                else:
                    found.append((target, None, shared, attr))
        return found

    @classmethod
    def filters(cls, root: str) -> list[str]:
        """Every filter a worker of this service subscribes to: its handlers', and the
        runtime's own (the command inbox, the presence query)."""
        own = [inbox(root, cls.name), topics.PRESENCE_QUERY.address(root)]
        return own + [f"{root}/{rel}" for rel, *_ in cls.handled()]

    def bindings(self) -> list[tuple[str, Topic | None, bool, Handler]]:
        """(filter relative to root, registry entry or None, shared, bound handler)."""
        return [(f, e, s, getattr(self, attr)) for f, e, s, attr in self.handled()]


def inbox(root: str, service: str) -> str:
    """A service's command inbox: every command to it, its unknown verbs included."""
    return f"{root}/commands/{service}/#"


class SeenIds:
    """A bounded memory of processed activity ids (insertion-ordered dict as an LRU)."""

    def __init__(self, size: int = _SEEN_IDS) -> None:
        self._ids: dict[str, None] = {}
        self._size = size

    def __contains__(self, activity_id: str) -> bool:
        return activity_id in self._ids

    def add(self, activity_id: str) -> None:
        self._ids[activity_id] = None
        if len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]

    def discard(self, activity_id: str) -> None:
        self._ids.pop(activity_id, None)


def _resume(coro: Coroutine[Any, Any, None], pending: Any) -> Generator[Any, Any, None]:
    """Drive a coroutine that already ran its first step (see ``Worker._run_eagerly``)."""
    while True:
        try:
            value = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # a cancellation or a failed future: pass it in
            try:
                pending = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                pending = coro.send(value)
            except StopIteration:
                return


class _Resumed:
    __slots__ = ("_gen",)

    def __init__(self, coro: Coroutine[Any, Any, None], pending: Any) -> None:
        self._gen = _resume(coro, pending)

    def __await__(self) -> Generator[Any, Any, None]:
        return self._gen


async def _finish(coro: Coroutine[Any, Any, None], pending: Any) -> None:
    await _Resumed(coro, pending)


@dataclass(slots=True)
class _Binding:
    filter: str  # absolute
    entry: Topic | None
    handler: Handler
    shared: bool


class Worker:
    """Runs one service instance on one MQTT connection."""

    def __init__(self, service_cls: type[Service], settings: Settings) -> None:
        self.settings = settings
        self.name = service_cls.name
        self.root = settings.root
        self.log = logging.getLogger(f"dovecote.{self.name}")
        self.client_id = f"{settings.root}-{self.name}-{settings.instance}"
        self.presence_topic = topics.PRESENCE.address(
            self.root, service=self.name, instance=settings.instance
        )
        self.deadletter_topic = topics.DEADLETTER.address(self.root, service=self.name)
        self.inbox = inbox(self.root, self.name)
        self.query_topic = topics.PRESENCE_QUERY.address(self.root)
        self.redeliver_topic = topics.REDELIVER.address(self.root, service=self.name)
        self.conn = Connection(
            settings.broker,
            self.client_id,
            on_message=self._on_message,
            clean_session=service_cls.clean_session,
            keepalive=settings.keepalive,
            will=Will(self.presence_topic, self._presence("Leave", "offline")),
            on_connected=self._on_connected,
        )
        self.outbox: Outbox | None = None
        if service_cls.outbox:
            folder = settings.get_str("DOVECOTE_OUTBOX_DIR", str(PROJECT / ".dovecote" / "outbox"))
            self.outbox = Outbox(
                Path(folder) / f"{self.client_id}.sqlite3",
                settings.get_int("DOVECOTE_OUTBOX_LIMIT", 10_000, 1, 1_000_000),
            )
        durable = self._publish_durable if self.outbox is not None else None
        self.bus = Bus(self.conn.publish, self.name, settings, durable)
        self.service = service_cls(self.bus, settings)
        self._bindings: list[_Binding] = []
        self._routes: dict[str, list[tuple[_Binding, dict[str, str]]]] = {}
        self._seen = SeenIds()
        # activity id -> (mid, qos) of copies that arrived while the first was in a handler
        self._inflight: dict[str, list[tuple[int, int]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.caps: Capabilities | None = None
        self.plan: pool.Plan | None = None
        self._ask_presence = False
        self.stopping = asyncio.Event()
        self._plan_subscriptions()

    # --- subscriptions and routing ---------------------------------------------------------

    def _plan_subscriptions(self) -> None:
        for rel, entry, shared, handler in self.service.bindings():
            self._bindings.append(_Binding(f"{self.root}/{rel}", entry, handler, shared))
        named = [(b.filter, getattr(b.handler, "__name__", "?")) for b in self._bindings]
        pool.check(
            [n for n, b in zip(named, self._bindings, strict=True) if b.shared],
            [n for n, b in zip(named, self._bindings, strict=True) if not b.shared],
        )
        # The command inbox is pooled: an unknown command is dead-lettered once, not N times.
        self.pooled = pool.minimal([self.inbox, *(b.filter for b in self._bindings if b.shared)])
        self.plain = pool.minimal(
            [self.query_topic, *(b.filter for b in self._bindings if not b.shared)]
        )
        # What this worker would subscribe to where shared subscriptions work (for logs).
        self.filters = [f"$share/{self.name}/{f}" for f in self.pooled] + self.plain

    def _route(self, topic: str) -> list[tuple[_Binding, dict[str, str]]]:
        routes = self._routes.get(topic)
        if routes is None:
            routes = []
            for b in self._bindings:
                if b.entry is not None:
                    params = b.entry.match(self.root, topic)
                    if params is not None:
                        routes.append((b, params))
                elif topics.matches(b.filter, topic):
                    found = topics.lookup(self.root, topic)
                    routes.append((b, found[1] if found else {}))
            if len(self._routes) > 10_000:
                self._routes.clear()
            self._routes[topic] = routes
        return routes

    # --- the hot path --------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        if msg.retain and not msg.payload:
            self.conn.ack(msg.mid, msg.qos)  # a cleared retained topic: nothing to do
            return
        if msg.topic == self.query_topic:
            self._answer_presence_query(msg)
            return
        if msg.topic == self.redeliver_topic:
            msg = self._unpark(msg)
            if not msg.topic:
                return
        routes = self._route(msg.topic)
        if not routes:
            reason = (
                f"unknown command {msg.topic.rsplit('/', 1)[-1]!r} for {self.name}"
                if msg.topic.startswith(self.inbox[:-1])
                else f"no handler for topic {msg.topic}"
            )
            self._reject(msg, reason)
            return
        if len(msg.payload) > self.settings.max_payload_bytes:
            self._reject(
                msg,
                f"payload of {len(msg.payload)} bytes is over the "
                f"{self.settings.max_payload_bytes}-byte limit",
            )
            return
        if len(routes) > 1:
            self._spawn(self._handle_all(msg, routes))
            return
        binding, params = routes[0]
        entry = binding.entry or self._entry_for(msg.topic)
        codec = entry.codec if entry else _GENERIC
        try:
            activity = codec.decode(msg.payload)
        except act.InvalidActivity as exc:
            self._reject(msg, str(exc))
            return
        if self._duplicate(activity.id, msg):
            return
        delivery = Delivery(msg.topic, params, msg.payload, msg.retain, entry)
        self._run_eagerly(binding.handler, activity, delivery, msg)

    def _unpark(self, msg: Message) -> Message:
        """A dead letter sent back (``dovecote deadletter replay``): the original message.

        It then goes through the whole path again, decoding included, as if it had just
        arrived on its original topic; its ack is the redelivery command's. An id remembered
        as handled is forgotten first: the operator wants it handled again. Returns a message
        with an empty topic when there is nothing to run (the command was dead-lettered).
        """
        nothing = Message("", b"", 0, False, 0)
        try:
            command = topics.REDELIVER.codec.decode(msg.payload)
        except act.InvalidActivity as exc:
            self._reject(msg, str(exc))
            return nothing
        if command.id in self._seen:  # the same redelivery twice: once is what was asked
            self.conn.ack(msg.mid, msg.qos)
            return nothing
        self._seen.add(command.id)
        parked = command.object.object
        if parked.mediaType == "application/octet-stream;base64":
            try:
                payload = base64.b64decode(parked.content, validate=True)
            except ValueError:
                self._reject(msg, "the dead letter's base64 content is damaged")
                return nothing
        else:
            payload = parked.content.encode()
        if len(payload) != parked.size:
            self._reject(msg, f"cannot redeliver a letter cut short ({parked.size} bytes)")
            return nothing
        if not parked.name.startswith(f"{self.root}/") or parked.name == self.redeliver_topic:
            self._reject(msg, f"cannot redeliver a message of {parked.name!r} here")
            return nothing
        with contextlib.suppress(act.InvalidActivity):
            self._seen.discard(_GENERIC.decode(payload).id)
        self.log.info(
            "redelivering dead letter %s (%s) on %s", command.object.id, command.id, parked.name
        )
        return Message(parked.name, payload, msg.qos, False, msg.mid)

    def _duplicate(self, activity_id: str, msg: Message) -> bool:
        """Skip a copy of an activity handled already, or being handled right now.

        A copy of one still in a handler is acknowledged only when that handler is done:
        acknowledged earlier, a crash now would lose the activity.
        """
        if activity_id in self._seen:
            self.log.debug("duplicate %s on %s skipped", activity_id, msg.topic)
            self.conn.ack(msg.mid, msg.qos)
            return True
        waiting = self._inflight.get(activity_id)
        if waiting is not None:
            waiting.append((msg.mid, msg.qos))
            return True
        return False

    def _settle(self, activity_id: str) -> None:
        """Acknowledge the copies that waited for this activity's handler."""
        for mid, qos in self._inflight.pop(activity_id, ()):
            self.conn.ack(mid, qos)

    def _entry_for(self, topic: str) -> Topic | None:
        found = topics.lookup(self.root, topic)
        return found[0] if found else None

    def _run_eagerly(
        self, handler: Handler, activity: Any, delivery: Delivery, msg: Message
    ) -> None:
        """Run the handler's first step now; make a task only if it really awaits.

        Python 3.12's eager tasks, by hand for 3.11: most handlers finish without
        suspending, and skipping a Task and a loop turn per message is measurable (PERF.md).
        """
        coro = handler(activity, delivery)
        if not self.service.eager_handlers:
            self._inflight.setdefault(activity.id, [])
            self._spawn(self._complete(coro, handler, activity, delivery, msg))
            return
        try:
            pending = coro.send(None)
        except StopIteration:
            self._done(activity, msg)
            return
        except Exception as exc:
            self._inflight.setdefault(activity.id, [])
            self._spawn(self._retry_then_done(handler, activity, delivery, msg, exc))
            return
        self._inflight.setdefault(activity.id, [])
        self._spawn(self._complete(_finish(coro, pending), handler, activity, delivery, msg))

    async def _complete(
        self,
        first: Awaitable[None],
        handler: Handler,
        activity: Any,
        delivery: Delivery,
        msg: Message,
    ) -> None:
        try:
            await first
        except Exception as exc:
            await self._retry(handler, activity, delivery, msg, exc)
        self._done(activity, msg)

    async def _retry_then_done(
        self, handler: Handler, activity: Any, delivery: Delivery, msg: Message, error: Exception
    ) -> None:
        await self._retry(handler, activity, delivery, msg, error)
        self._done(activity, msg)

    async def _retry(
        self, handler: Handler, activity: Any, delivery: Delivery, msg: Message, error: Exception
    ) -> None:
        """Try a failed handler again, with backoff; past the limit, park the message.

        Either way the message is then done: a poison message must not block the stream.
        ``Unprocessable`` is parked at once: no retry can fix it.
        """
        name = getattr(handler, "__name__", handler)
        attempts, delay = 1, _RETRY_DELAY
        while attempts < self.settings.handler_attempts and not isinstance(error, Unprocessable):
            self.log.warning(
                "handler %s failed on %s (attempt %d): %r [context=%s]",
                name,
                msg.topic,
                attempts,
                error,
                getattr(activity, "context", None),
            )
            await asyncio.sleep(delay)
            delay *= 2
            attempts += 1
            try:
                await handler(activity, delivery)
            except Exception as exc:
                error = exc
            else:
                return
        self.log.error(
            "handler %s failed %d times on %s; dead-lettered: %r [context=%s]",
            name,
            attempts,
            msg.topic,
            error,
            getattr(activity, "context", None),
        )
        unfixable = isinstance(error, Unprocessable)
        self._park(msg, str(error) if unfixable else f"handler {name} failed: {error!r}", attempts)

    async def _handle_all(
        self, msg: Message, routes: list[tuple[_Binding, dict[str, str]]]
    ) -> None:
        """A message more than one handler wants: each runs (and retries) once; one ack."""
        decoded: dict[int, Any] = {}
        for binding, params in routes:
            entry = binding.entry or self._entry_for(msg.topic)
            codec = entry.codec if entry else _GENERIC
            try:
                activity = decoded.get(id(codec)) or codec.decode(msg.payload)
            except act.InvalidActivity as exc:
                self._reject(msg, str(exc))
                if decoded:
                    self._settle(next(iter(decoded.values())).id)
                return
            if not decoded:
                if self._duplicate(activity.id, msg):
                    return
                self._inflight.setdefault(activity.id, [])
            decoded[id(codec)] = activity
            if activity.id in self._seen:
                continue
            delivery = Delivery(msg.topic, params, msg.payload, msg.retain, entry)
            try:
                await binding.handler(activity, delivery)
            except Exception as exc:
                await self._retry(binding.handler, activity, delivery, msg, exc)
        for activity in decoded.values():
            self._seen.add(activity.id)
        self.conn.ack(msg.mid, msg.qos)
        for activity in decoded.values():
            self._settle(activity.id)

    def _done(self, activity: Any, msg: Message) -> None:
        self._seen.add(activity.id)
        self.conn.ack(msg.mid, msg.qos)
        self._settle(activity.id)

    def _reject(self, msg: Message, reason: str, attempts: int = 0) -> None:
        """Park a message that cannot be handled at all, and acknowledge it."""
        self._park(msg, reason, attempts)
        self.conn.ack(msg.mid, msg.qos)

    def _park(self, msg: Message, reason: str, attempts: int) -> None:
        """Publish the message, with the reason, on this service's dead-letter topic.

        The letter itself must fit the payload limit, or the deadletters service would
        refuse it in turn: the original is cut until it does. Cutting at the limit is not
        enough (found by the fuzz run): JSON escapes a control character in 6 bytes and
        base64 takes 4 for 3, so a letter can be several times its payload.
        """
        self.log.warning("dead-lettered a message on %s: %s", msg.topic, reason)
        if msg.topic == self.deadletter_topic:  # never loop on our own letters
            return
        try:
            msg.payload.decode("utf-8")
            text = True
        except UnicodeDecodeError:
            text = False
        limit = self.settings.max_payload_bytes
        envelope = len(act.encode(self._letter(msg, reason, attempts, 0, text)))
        keep = limit
        while True:
            letter = self._letter(msg, reason, attempts, keep, text)
            size = len(act.encode(letter))
            if size <= limit or keep == 0:
                break
            # The envelope's bytes are fixed; the content's bytes per payload byte are not.
            shrunk = (limit - envelope) * keep // max(size - envelope, 1) - 16
            keep = max(0, min(keep - 1, shrunk))
        self.bus.publish(topics.DEADLETTER, letter, service=self.name)

    def _letter(
        self, msg: Message, reason: str, attempts: int, keep: int, text: bool
    ) -> dict[str, Any]:
        payload = msg.payload[:keep]
        if text:  # a cut may split a character: its bytes go, the rest is still a prefix
            content, media = payload.decode("utf-8", "ignore"), "application/activity+json"
        else:
            content, media = base64.b64encode(payload).decode(), "application/octet-stream;base64"
        return act.new(
            "Flag",
            self.bus.actor,
            {
                "type": "Object",
                "name": msg.topic,
                "mediaType": media,
                "content": content,
                "size": len(msg.payload),
                "attempts": attempts,
            },
            summary=reason[:4000],
        )

    def _publish_durable(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Outbox first, then the broker; the row goes when the broker acknowledges it."""
        outbox = self.outbox
        assert outbox is not None
        seq = outbox.add(topic, payload, qos, retain)
        try:
            self.conn.publish(topic, payload, qos, retain, on_acked=lambda: outbox.remove(seq))
        except BusError:
            outbox.remove(seq)
            raise

    def _resend_outbox(self) -> None:
        """What a previous run of this worker promised and the broker never acknowledged."""
        if self.outbox is None:
            return
        outbox = self.outbox
        left = outbox.open()
        for p in left:
            done = functools.partial(outbox.remove, p.seq)
            self.conn.publish(p.topic, p.payload, p.qos, p.retain, on_acked=done)
        if left:
            self.log.warning(
                "sending again %d message(s) from the outbox %s that the broker had not "
                "acknowledged when this worker last stopped",
                len(left),
                self.outbox.path,
            )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- presence and lifecycle ----------------------------------------------------------

    def _presence(self, kind: str, status: str) -> bytes:
        return act.encode(
            act.new(
                kind,
                act.service_actor(self.name),
                {
                    "type": "Service",
                    "id": f"urn:dovecote:service:{self.name}:{self.settings.instance}",
                    "name": self.name,
                    "instance": self.settings.instance,
                    "status": status,
                    "pid": os.getpid(),
                    "host": os.uname().nodename[:200],
                },
            )
        )

    def _on_connected(self, session_present: bool) -> None:
        self.conn.publish(self.presence_topic, self._presence("Join", "online"), 1, True)
        if self._ask_presence:
            # Sent after this connection's SUBSCRIBE: the answers match it.
            question = act.new(
                "Question", self.bus.actor, {"type": "Collection", "name": "services online"}
            )
            self.bus.publish(topics.PRESENCE_QUERY, question)

    def _answer_presence_query(self, msg: Message) -> None:
        """Someone cannot see retained presence through a wildcard: say we are here.

        Only an activity is a question: garbage is parked with its reason like any other
        payload, not answered (a flood of junk must not make every worker republish).
        """
        try:
            topics.PRESENCE_QUERY.codec.decode(msg.payload)
        except act.InvalidActivity as exc:
            self._reject(msg, str(exc))
            return
        self.conn.publish(self.presence_topic, self._presence("Join", "online"), 1, True)
        self.conn.ack(msg.mid, msg.qos)

    async def start(self) -> None:
        """Check the broker, open the service's resources, then subscribe and connect.

        The check comes first: once ``setup`` has opened a server (the gateway's port), the
        subscriptions should follow at once, not a broker round trip later.
        """
        broker = self.settings.broker.redacted()
        self.caps = await capabilities.probe(self.settings.broker, self.root, self.client_id)
        self._resend_outbox()  # queued in paho; out as soon as the connection is up
        await self.service.setup()
        # 1: the only worker of its service (``dovecote run`` says so): plain subscriptions,
        # which survive a Mosquitto restart where $share ones do not (shared/pool.py).
        alone = self.settings.get_int("DOVECOTE_POOL_SIZE", 0, 0, 64) == 1
        self.plan = plan = pool.plan(
            self.name, self.settings.instance, self.pooled, self.plain, self.caps, alone
        )
        self.conn.unsubscribe(*plan.unsubscribe)
        for f in plan.subscribe:
            self.conn.subscribe(f, 1)
        sample = topics.PRESENCE.address(self.root, service="x", instance="1")
        self._ask_presence = not self.caps.retained_to_wildcards and any(
            f != sample and topics.matches(f, sample) for f in plan.subscribe
        )
        self.conn.start()
        self.log.info(
            "%s worker %s starting; broker %s (%s); subscribed to %s",
            self.name,
            self.settings.instance,
            broker,
            self.caps.describe(),
            ", ".join(plan.subscribe),
        )
        # The inbox alone (no shared handler, e.g. the gateway) is nothing to warn about.
        if (
            not self.caps.shared_subscriptions
            and not alone
            and any(b.shared for b in self._bindings)
        ):
            if plan.standby:
                self.log.warning(
                    "broker %s does not deliver shared subscriptions ($share): this worker "
                    "(%s) stands by and handles only %s; worker %s of %s handles %s alone. "
                    "Nothing is lost or handled twice; to spread the load, use a broker with "
                    "shared subscriptions (see docs/brokers.md)",
                    broker,
                    self.settings.instance,
                    ", ".join(self.plain),
                    pool.LEADER,
                    self.name,
                    ", ".join(plan.pooled),
                )
            else:  # a pool of one is fine: worth knowing, not a warning
                self.log.info(
                    "broker %s does not deliver shared subscriptions ($share): this worker "
                    "handles %s alone; other workers of %s stand by (see docs/brokers.md)",
                    broker,
                    ", ".join(plan.pooled),
                    self.name,
                )
        if self._ask_presence:
            self.log.info(
                "broker %s does not deliver retained messages to wildcards: asking "
                "every worker to announce itself on %s",
                broker,
                self.query_topic,
            )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        # A signal while still waiting for the broker must stop us too.
        starting = loop.create_task(self.start())
        stopping = loop.create_task(self.stopping.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        elif starting.exception() is not None:
            stopping.cancel()
            starting.result()  # why this worker cannot start: exit with it, as before
        await stopping
        await self.shutdown()

    async def shutdown(self) -> None:
        self.log.info("stopping")
        await self.service.teardown()
        if self._tasks:  # let handlers in flight finish (bounded); unacked ones come back
            await asyncio.wait(set(self._tasks), timeout=5)
        with contextlib.suppress(Exception):
            self.conn.publish(self.presence_topic, self._presence("Leave", "offline"), 1, True)
        await self.conn.stop()
        if self.outbox is not None:
            if len(self.outbox):
                self.log.warning(
                    "%d message(s) not acknowledged by the broker stay in the outbox %s; "
                    "they are sent at the next start",
                    len(self.outbox),
                    self.outbox.path,
                )
            self.outbox.close()
        self.log.info("stopped")


_GENERIC = act.Codec(act.Activity)


def run(service_cls: type[Service]) -> None:
    """The whole ``__main__`` of a service: configure, connect, serve until signalled."""
    try:
        settings = Settings.from_env()
        setup_logging(settings.log_level)
        worker = Worker(service_cls, settings)  # a service reads its own settings here
    except ConfigError as exc:
        print(f"{service_cls.name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    asyncio.run(worker.run())
