"""One message's path through a worker, top to bottom, in one place.

``Dispatcher.on_message`` is called on the event loop for every message, in arrival order:

1. a cleared retained topic: acknowledged, nothing else;
2. the runtime's own topics: the presence query (answered by the worker) and a redelivery
   (a letter this service signed, unchanged, never redelivered before: the parked original
   takes the message's place and goes on down this path; any other is parked, unrun);
3. route: which handlers want this topic; none: parked (an unknown command verb says so);
4. size: over ``DOVECOTE_MAX_PAYLOAD``: parked unread;
5. decode and validate into the topic's payload type; invalid: parked with the reason;
6. dedupe on the topic and the activity ``id``: a copy of one handled already is
   acknowledged and skipped, a copy of one being handled waits for it (acknowledged with
   it); a *different* activity under an id remembered on this topic is parked (``Seen``);
7. the handler runs (eagerly where the service allows it); it raises: retried with backoff,
   then parked; ``Unprocessable``: parked at once;
8. acknowledged: only now, so a worker killed mid-handler gets the message again.

Every park is published on ``deadletter/<service>`` (``dovecote.letters``) and acknowledged:
a poison message never blocks the stream.

The worker's ``Meter`` (``dovecote.metrics``) hears of each message at 7 (``begin``, its
lag) and 8 (``done``, its latency and topic), and of each skip, retry and park where it
happens: a counter bumped, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from dovecote import activity as act
from dovecote import letters, topics
from dovecote.config import Settings
from dovecote.eager import finish
from dovecote.errors import InvalidActivity, InvalidLetter, Unprocessable
from dovecote.metrics import Meter
from dovecote.mqtt import Message
from dovecote.redelivery import Seal
from dovecote.service import Delivery, Handler, inbox
from dovecote.topics import Topic

SEEN_IDS = 20_000  # per worker; redeliveries arrive within seconds, not after 20k messages
RETRY_DELAY = 0.2  # seconds before the 2nd attempt, doubling after
GENERIC = act.Codec(act.Activity)  # for topics a handler takes by filter, not by entry

Ack = Callable[[int, int], None]  # mid, qos
Park = Callable[[str, bytes, str, int], None]  # topic, payload, reason, attempts


@dataclass(slots=True)
class Binding:
    """One handler of the service and the absolute filter it was registered for."""

    filter: str
    entry: Topic | None
    handler: Handler
    shared: bool


Route = tuple[Binding, dict[str, str]]


Seen = tuple[str, str]  # (topic, activity id): an id only ever stands for one topic's activity
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fingerprint(activity: Any) -> int:
    """What two messages with one id must share to be the same activity: everything
    decoded but ``published``, which a publisher's re-run (a derived id, made again after
    a crash before its ack) sets anew. ``hash``: salted per process, only kept in memory."""
    return hash(act.encode(msgspec.structs.replace(activity, published=_EPOCH)))


class SeenIds:
    """A bounded memory of handled activities, (topic, id) -> fingerprint (an
    insertion-ordered dict as an LRU)."""

    def __init__(self, size: int = SEEN_IDS) -> None:
        self._ids: dict[Seen, int] = {}
        self._size = size

    def __contains__(self, key: Seen) -> bool:
        return key in self._ids

    def get(self, key: Seen) -> int | None:
        return self._ids.get(key)

    def add(self, key: Seen, print_: int = 0) -> None:
        self._ids[key] = print_
        if len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]

    def discard(self, key: Seen) -> None:
        self._ids.pop(key, None)


class Dispatcher:
    """Routes, decodes, deduplicates, runs handlers, acknowledges, retries and parks."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        bindings: list[Binding],
        *,
        ack: Ack,
        park: Park,
        on_query: Callable[[Message], None],
        eager: bool,
        log: logging.Logger,
        meter: Meter | None = None,
        seal: Seal | None = None,
    ) -> None:
        """``seal``: checks the letters sent back for redelivery; None: none is run."""
        self.name = name
        self.root = settings.root
        self.settings = settings
        self.bindings = bindings
        self._ack = ack
        self._publish_letter = park
        self._on_query = on_query
        self._eager = eager
        self.log = log
        self.meter = meter or Meter()
        self.seal = seal
        self.inbox = inbox(self.root, name)
        self.query_topic = topics.PRESENCE_QUERY.address(self.root)
        self.redeliver_topic = topics.REDELIVER.address(self.root, service=name)
        self.deadletter_topic = topics.DEADLETTER.address(self.root, service=name)
        self._routes: dict[str, list[Route]] = {}
        self._seen = SeenIds()
        # (topic, id) of an activity in a handler -> its fingerprint and the (mid, qos) of
        # the copies that arrived meanwhile
        self._inflight: dict[Seen, tuple[int, list[tuple[int, int]]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.retained_tasks: set[asyncio.Task[None]] = set()  # handling retained messages

    # --- the path ----------------------------------------------------------------------

    def on_message(self, msg: Message) -> None:
        if msg.retain and not msg.payload:
            self._ack(msg.mid, msg.qos)  # a cleared retained topic: nothing to do
            return
        if msg.topic == self.query_topic:
            self._on_query(msg)
            return
        if msg.topic == self.redeliver_topic:
            unparked = self._unpark(msg)
            if unparked is None:
                return
            msg = unparked
        routes = self._route(msg.topic)
        if not routes:
            reason = (
                f"unknown command {msg.topic.rsplit('/', 1)[-1]!r} for {self.name}"
                if msg.topic.startswith(self.inbox[:-1])
                else f"no handler for topic {msg.topic}"
            )
            self.reject(msg, reason)
            return
        limit = self.settings.max_payload_bytes
        if len(msg.payload) > limit:
            self.reject(msg, f"payload of {len(msg.payload)} bytes is over the {limit}-byte limit")
            return
        if len(routes) > 1:
            self._spawn(self._handle_all(msg, routes), msg.retain)
            return
        binding, params = routes[0]
        entry = binding.entry or self._entry_for(msg.topic)
        codec = entry.codec if entry else GENERIC
        try:
            activity = codec.decode(msg.payload)
        except InvalidActivity as exc:
            self.reject(msg, str(exc))
            return
        print_ = self._first(activity, msg)
        if print_ is None:
            return
        delivery = Delivery(msg.topic, params, msg.payload, msg.retain, entry)
        self._run(binding.handler, activity, delivery, msg, print_)

    def _route(self, topic: str) -> list[Route]:
        routes = self._routes.get(topic)
        if routes is None:
            routes = []
            for b in self.bindings:
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

    def _entry_for(self, topic: str) -> Topic | None:
        found = topics.lookup(self.root, topic)
        return found[0] if found else None

    def _first(self, activity: Any, msg: Message) -> int | None:
        """The activity's fingerprint when it is to be handled; None when it is not: a copy
        of one handled already on this topic, or being handled right now, is skipped; a
        different activity under such an id is parked (a publisher that reuses an id).

        Remembered per topic: an id seen on one topic never suppresses another topic's
        activity. A copy of one still in a handler is acknowledged only when that handler
        is done: acknowledged earlier, a crash now would lose the activity.
        """
        key = (msg.topic, activity.id)
        print_ = fingerprint(activity)
        handled = self._seen.get(key)
        if handled is not None:
            if handled != print_:
                self._conflict(activity.id, msg)
                return None
            self.log.debug("duplicate %s on %s skipped", activity.id, msg.topic)
            self.meter.skipped += 1
            self._ack(msg.mid, msg.qos)
            return None
        running = self._inflight.get(key)
        if running is not None:
            if running[0] != print_:
                self._conflict(activity.id, msg)
                return None
            self.meter.skipped += 1
            running[1].append((msg.mid, msg.qos))
            return None
        return print_

    def _conflict(self, activity_id: str, msg: Message) -> None:
        self.reject(
            msg,
            f"another activity reuses the id {activity_id}, already handled on this topic: "
            "an id names one activity (this one was not handled)",
        )

    def _run(
        self, handler: Handler, activity: Any, delivery: Delivery, msg: Message, print_: int
    ) -> None:
        """Run the handler: its first step now when the service is eager (``eager.py``),
        as a task otherwise; the message is done (acked) when the handler is."""
        started = self.meter.begin(None if msg.retain else activity.published)
        coro = handler(activity, delivery)
        key = (msg.topic, activity.id)
        if not self._eager:
            self._inflight.setdefault(key, (print_, []))
            self._spawn(self._complete(coro, handler, activity, delivery, msg, started), msg.retain)
            return
        try:
            pending = coro.send(None)
        except StopIteration:
            self._done(key, print_, msg, started)
            return
        except Exception as exc:
            self._inflight.setdefault(key, (print_, []))
            self._spawn(
                self._retry_then_done(handler, activity, delivery, msg, exc, started), msg.retain
            )
            return
        self._inflight.setdefault(key, (print_, []))
        first = finish(coro, pending)
        self._spawn(self._complete(first, handler, activity, delivery, msg, started), msg.retain)

    async def _complete(
        self,
        first: Awaitable[None],
        handler: Handler,
        activity: Any,
        delivery: Delivery,
        msg: Message,
        started: float,
    ) -> None:
        try:
            await first
        except Exception as exc:
            await self._retry(handler, activity, delivery, msg, exc)
        self._finished(activity, msg, started)

    async def _retry_then_done(
        self,
        handler: Handler,
        activity: Any,
        delivery: Delivery,
        msg: Message,
        error: Exception,
        started: float,
    ) -> None:
        await self._retry(handler, activity, delivery, msg, error)
        self._finished(activity, msg, started)

    async def _retry(
        self, handler: Handler, activity: Any, delivery: Delivery, msg: Message, error: Exception
    ) -> None:
        """Try a failed handler again, with backoff; past the limit, park the message.

        Either way the message is then done: a poison message must not block the stream.
        ``Unprocessable`` is parked at once: no retry can fix it.
        """
        name = getattr(handler, "__name__", handler)
        attempts, delay = 1, RETRY_DELAY
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
            self.meter.retries += 1
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
        self.park(msg, str(error) if unfixable else f"handler {name} failed: {error!r}", attempts)

    async def _handle_all(self, msg: Message, routes: list[Route]) -> None:
        """A message more than one handler wants: each runs (and retries) once; one ack.
        Deduplicated on the first decoding (the routes of a topic come in one order)."""
        decoded: dict[int, Any] = {}
        started = 0.0
        key: Seen | None = None
        print_ = 0
        for binding, params in routes:
            entry = binding.entry or self._entry_for(msg.topic)
            codec = entry.codec if entry else GENERIC
            try:
                activity = decoded.get(id(codec)) or codec.decode(msg.payload)
            except InvalidActivity as exc:
                self.reject(msg, str(exc))
                if key is not None:
                    self._settle(key)
                return
            if key is None:
                first = self._first(activity, msg)
                if first is None:
                    return
                key, print_ = (msg.topic, activity.id), first
                self._inflight.setdefault(key, (print_, []))
                started = self.meter.begin(None if msg.retain else activity.published)
            decoded[id(codec)] = activity
            delivery = Delivery(msg.topic, params, msg.payload, msg.retain, entry)
            try:
                await binding.handler(activity, delivery)
            except Exception as exc:
                await self._retry(binding.handler, activity, delivery, msg, exc)
        if key is not None:
            self._done(key, print_, msg, started)

    def _finished(self, activity: Any, msg: Message, started: float) -> None:
        """A handler run as a task is over: its fingerprint waited in ``_inflight``."""
        key = (msg.topic, activity.id)
        self._done(key, self._inflight[key][0], msg, started)

    def _done(self, key: Seen, print_: int, msg: Message, started: float) -> None:
        self._seen.add(key, print_)
        self._ack(msg.mid, msg.qos)
        self.meter.done(msg.topic, started)
        self._settle(key)

    def _settle(self, key: Seen) -> None:
        """Acknowledge the copies that waited for this activity's handler."""
        for mid, qos in self._inflight.pop(key, (0, []))[1]:
            self._ack(mid, qos)

    # --- parking and redelivery --------------------------------------------------------

    def reject(self, msg: Message, reason: str, attempts: int = 0) -> None:
        """Park a message that cannot be handled at all, and acknowledge it."""
        self.park(msg, reason, attempts)
        self._ack(msg.mid, msg.qos)

    def park(self, msg: Message, reason: str, attempts: int) -> None:
        """Publish the message, with the reason, on this service's dead-letter topic."""
        self.log.warning("dead-lettered a message on %s: %s", msg.topic, reason)
        self.meter.parked += 1
        if msg.topic == self.deadletter_topic:  # never loop on our own letters
            return
        self._publish_letter(msg.topic, msg.payload, reason, attempts)

    def _unpark(self, msg: Message) -> Message | None:
        """A dead letter sent back (``dovecote deadletter replay``): the original message.

        It then goes through the whole path again, decoding included, as if it had just
        arrived on its original topic; its ack is the redelivery command's. An id remembered
        as handled is forgotten first: the operator wants it handled again. None when there
        is nothing to run (the command was parked or was a repeat).

        Whoever may write this command need not be who may write the original topic: only
        a letter this service signed, unchanged, on a topic it handles, redelivered for
        the first time, runs (``dovecote.redelivery``); any other is parked with the reason.
        """
        try:
            command = topics.REDELIVER.codec.decode(msg.payload)
        except InvalidActivity as exc:
            self.reject(msg, str(exc))
            return None
        if (msg.topic, command.id) in self._seen:  # the same redelivery twice: once is asked
            self._ack(msg.mid, msg.qos)
            return None
        self._seen.add((msg.topic, command.id))
        parked = command.object.object
        try:
            payload = letters.original(parked)
        except InvalidLetter as exc:
            self.reject(msg, str(exc))
            return None
        refused = self._refusal(command, payload)
        if refused is not None:
            self.reject(msg, refused)
            return None
        assert self.seal is not None  # _refusal says so when there is none
        earlier = self.seal.claim(command.object.id, command.id)
        if earlier == command.id:  # the broker's copy of this very command, after a restart
            self.log.warning("redelivery %s ran once already: skipped", command.id)
            self._ack(msg.mid, msg.qos)
            return None
        if earlier is not None:
            self.reject(
                msg,
                f"dead letter {command.object.id} was redelivered already (by {earlier}): a "
                "letter runs again once; if it fails again, its new letter can be replayed",
            )
            return None
        with contextlib.suppress(InvalidActivity):
            self._seen.discard((parked.name, GENERIC.decode(payload).id))
        self.log.info(
            "redelivering dead letter %s (%s) on %s", command.object.id, command.id, parked.name
        )
        return Message(parked.name, payload, msg.qos, False, msg.mid)

    def _refusal(self, command: act.Redelivery, payload: bytes) -> str | None:
        """Why this letter may not run here; None: it may (not yet claimed)."""
        if self.seal is None:
            return f"{self.name} checks no dead letters here: none is redelivered"
        forged = self.seal.forged(command.object, payload)
        if forged is not None:
            return forged
        topic = command.object.object.name
        if (
            not topic.startswith(f"{self.root}/")
            or topic == self.redeliver_topic
            or not self._route(topic)
        ):
            return f"cannot redeliver a message of {topic!r} here: {self.name} does not handle it"
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None], retained: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if retained:
            self.retained_tasks.add(task)
            task.add_done_callback(self.retained_tasks.discard)
