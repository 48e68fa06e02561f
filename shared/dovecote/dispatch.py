"""One message's path through a worker, top to bottom, in one place.

``Dispatcher.on_message`` is called on the event loop for every message, in arrival order:

1. a cleared retained topic: acknowledged, nothing else;
2. the runtime's own topics: the presence query (answered by the worker) and a redelivery
   (``dovecote.redelivery``: a letter this service signed, unchanged, never redelivered
   before: the parked original takes the message's place and goes on down this path; any
   other is parked, unrun);
3. route (``dovecote.routes``): which handlers want this topic; none: parked (an unknown
   command verb says so);
4. size: over ``DOVECOTE_MAX_PAYLOAD``: parked unread;
5. decode and validate into the topic's payload type (for each handler that wants it, before
   any runs); invalid: parked with the reason;
6. dedupe on the topic and the activity ``id`` (``dovecote.dedupe``): a copy of one handled
   already is acknowledged and skipped, a copy of one being handled waits for it
   (acknowledged with it); a *different* activity under an id remembered on this topic is
   parked (``Seen``);
7. the handler runs (eagerly where the service allows it); it raises: retried with backoff,
   then parked; ``Unprocessable``: parked at once; ``StoreUnavailable`` (its database is
   out of reach): retried until it is back, never parked, the message unacknowledged;
8. acknowledged: only now, so a worker killed mid-handler gets the message again.

Every message ends in one place (``Dispatcher.finish``): parked if it is to be, remembered
as handled if it was, acknowledged. Every park is published on ``deadletter/<service>``
(``dovecote.letters``) and acknowledged: a poison message never blocks the stream.

The worker's ``Meter`` (``dovecote.metrics``) hears of each message at 7 (``begin``, its
lag) and 8 (``done``, its latency and topic), and of each skip, retry and park where it
happens: a counter bumped, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from dovecote import topics
from dovecote.config import Settings
from dovecote.dedupe import Seen, SeenIds, fingerprint
from dovecote.eager import finish as resume
from dovecote.errors import InvalidActivity, StoreUnavailable, Unprocessable
from dovecote.metrics import Meter
from dovecote.mqtt import Message
from dovecote.redelivery import Redeliveries, Seal
from dovecote.routes import Binding, Call, Routes
from dovecote.service import Delivery, Handler, inbox

RETRY_DELAY = 0.2  # seconds before the 2nd attempt, doubling after
STORE_RETRY_MAX = 5.0  # seconds between tries while a handler's database is out of reach

Ack = Callable[[int, int], None]  # mid, qos
Park = Callable[[str, bytes, str, int], None]  # topic, payload, reason, attempts
Letter = tuple[str, int]  # why a message is parked, after how many attempts of its handler

__all__ = ["Binding", "Dispatcher"]


class Dispatcher:
    """Routes, decodes, deduplicates, runs handlers, retries; ends each message (``finish``)."""

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
        self.routes = Routes(self.root, bindings)
        self._ack = ack
        self._publish_letter = park
        self._on_query = on_query
        self._eager = eager
        self.log = log
        self.meter = meter or Meter()
        self.inbox = inbox(self.root, name)
        self.query_topic = topics.PRESENCE_QUERY.address(self.root)
        self.deadletter_topic = topics.DEADLETTER.address(self.root, service=name)
        self._seen = SeenIds()
        self.redeliveries = Redeliveries(
            name, self.root, seal, self._seen, lambda topic: bool(self.routes.of(topic)), log
        )
        # (topic, id) of an activity in a handler -> its fingerprint and the (mid, qos) of
        # the copies that arrived meanwhile
        self._inflight: dict[Seen, tuple[int, list[tuple[int, int]]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.retained_tasks: set[asyncio.Task[None]] = set()  # handling retained messages

    # --- the path ----------------------------------------------------------------------

    def on_message(self, msg: Message) -> None:
        if msg.retain and not msg.payload:
            self.finish(msg)  # a cleared retained topic: nothing to do
            return
        if msg.topic == self.query_topic:
            self._on_query(msg)
            return
        if msg.topic == self.redeliveries.topic:
            unparked = self.redeliveries.unpark(msg)
            if not isinstance(unparked, Message):  # parked, or a repeat: only acknowledged
                self.finish(msg, letters=() if unparked is None else ((unparked, 0),))
                return
            msg = unparked
        routes = self.routes.of(msg.topic)
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
        try:
            calls = self.routes.calls(msg, routes)
        except InvalidActivity as exc:
            self.reject(msg, str(exc))
            return
        print_ = self._first(calls[0][1], msg)
        if print_ is None:
            return
        self._run(calls, msg, print_)

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
            self.finish(msg)
            return None
        running = self._inflight.get(key)
        if running is not None:
            if running[0] != print_:
                self._conflict(activity.id, msg)
                return None
            self.meter.skipped += 1
            running[1].append((msg.mid, msg.qos))  # acknowledged by the first's ``finish``
            return None
        return print_

    def _conflict(self, activity_id: str, msg: Message) -> None:
        self.reject(
            msg,
            f"another activity reuses the id {activity_id}, already handled on this topic: "
            "an id names one activity (this one was not handled)",
        )

    def _run(self, calls: list[Call], msg: Message, print_: int) -> None:
        """Run the handlers: a lone one's first step now when the service is eager
        (``eager.py``), as a task otherwise; the message ends when they have."""
        handler, activity, delivery = calls[0]
        key = (msg.topic, activity.id)
        started = self.meter.begin(None if msg.retain else activity.published, msg.topic)
        first: Awaitable[None] | Exception | None = None
        if self._eager and len(calls) == 1:
            coro = handler(activity, delivery)
            try:
                pending = coro.send(None)
            except StopIteration:
                self.finish(msg, key, print_, started)
                return
            except Exception as exc:
                first = exc
            else:
                first = resume(coro, pending)
        self._inflight.setdefault(key, (print_, []))
        self._spawn(self._carry(calls, msg, key, print_, started, first), msg.retain)

    async def _carry(
        self,
        calls: list[Call],
        msg: Message,
        key: Seen,
        print_: int,
        started: float,
        first: Awaitable[None] | Exception | None,
    ) -> None:
        """Each handler in turn, retried and parked past its limit; then the message ends.
        ``first``: the first handler's run begun already (``_run``), or how it failed."""
        letters: list[Letter] = []
        for handler, activity, delivery in calls:
            try:
                if first is None:
                    await handler(activity, delivery)
                elif isinstance(first, Exception):
                    raise first
                else:
                    await first
            except Exception as exc:
                letter = await retried(self, handler, activity, delivery, msg.topic, exc)
                if letter is not None:
                    letters.append(letter)
            first = None
        self.finish(msg, key, print_, started, letters)

    # --- the end of a message ----------------------------------------------------------

    def finish(
        self,
        msg: Message,
        key: Seen | None = None,
        print_: int = 0,
        started: float = 0.0,
        letters: Sequence[Letter] = (),
    ) -> None:
        """The one way a message ends, handled or not: its ``letters`` parked, the activity
        (``key``: its handlers ran) remembered and measured, the message acknowledged with
        the copies that waited for it. A poison message must not block the stream: parked,
        it is acknowledged too."""
        for reason, attempts in letters:
            self.park(msg, reason, attempts)
        if key is None:
            self._ack(msg.mid, msg.qos)
            return
        self._seen.add(key, print_)
        self._ack(msg.mid, msg.qos)
        self.meter.done(msg.topic, started)
        waited = self._inflight.pop(key, None)
        if waited is not None:
            for mid, qos in waited[1]:
                self._ack(mid, qos)

    def reject(self, msg: Message, reason: str) -> None:
        """Park a message that cannot be handled at all (it ends, unrun)."""
        self.finish(msg, letters=((reason, 0),))

    def park(self, msg: Message, reason: str, attempts: int) -> None:
        """Publish the message, with the reason, on this service's dead-letter topic."""
        self.log.warning("dead-lettered a message on %s: %s", msg.topic, reason)
        self.meter.parked += 1
        if msg.topic == self.deadletter_topic:  # never loop on our own letters
            return
        self._publish_letter(msg.topic, msg.payload, reason, attempts)

    def _spawn(self, coro: Coroutine[Any, Any, None], retained: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        if retained:
            self.retained_tasks.add(task)
            task.add_done_callback(self.retained_tasks.discard)


async def retried(
    d: Dispatcher, handler: Handler, activity: Any, delivery: Delivery, topic: str, error: Exception
) -> Letter | None:
    """Try a failed handler again, with backoff; past the limit: the letter to park.

    ``Unprocessable`` is parked at once: no retry can fix it. ``StoreUnavailable`` is tried
    until its database is back (``_until_stored``), and counts no attempt.
    """
    name = getattr(handler, "__name__", handler)
    attempts, delay = 1, RETRY_DELAY
    if isinstance(error, StoreUnavailable):
        after = await _until_stored(handler, activity, delivery, error, d.log, d.meter)
        if after is None:
            return None
        error = after
    while attempts < d.settings.handler_attempts and not isinstance(error, Unprocessable):
        d.log.warning(
            "handler %s failed on %s (attempt %d): %r [context=%s]",
            name,
            topic,
            attempts,
            error,
            getattr(activity, "context", None),
        )
        await asyncio.sleep(delay)
        delay *= 2
        attempts += 1
        d.meter.retries += 1
        try:
            await handler(activity, delivery)
        except Exception as exc:
            error = exc
        else:
            return None
    d.log.error(
        "handler %s failed %d times on %s; dead-lettered: %r [context=%s]",
        name,
        attempts,
        topic,
        error,
        getattr(activity, "context", None),
    )
    unfixable = isinstance(error, Unprocessable)
    return (str(error) if unfixable else f"handler {name} failed: {error!r}", attempts)


async def _until_stored(
    handler: Handler,
    activity: Any,
    delivery: Delivery,
    error: Exception,
    log: logging.Logger,
    meter: Meter,
) -> Exception | None:
    """Run a handler again while its database is out of reach: nothing was stored and
    nothing is wrong with the message, so it waits as long as it takes (unacknowledged:
    the broker holds the rest of the stream). None: it ran; else its next, other error."""
    name = getattr(handler, "__name__", handler)
    delay = RETRY_DELAY
    while isinstance(error, StoreUnavailable):
        log.warning("handler %s waits for its store: %s", name, error)
        await asyncio.sleep(delay)
        delay = min(delay * 2, STORE_RETRY_MAX)
        meter.retries += 1
        try:
            await handler(activity, delivery)
        except Exception as exc:
            error = exc
        else:
            return None
    return error
