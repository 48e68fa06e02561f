"""A pool's share of the bus on RabbitMQ: one quorum queue, its workers competing consumers.

RabbitMQ's MQTT plugin has no shared subscriptions (3.10 grants ``$share`` and delivers
nothing; later releases refuse it), but every MQTT publish is routed through the topic
exchange ``amq.topic`` with ``/`` turned into ``.`` (docs/brokers.md). RabbitMQ's own way to
share work is several consumers on one queue, so a pool of N workers declares one durable
quorum queue, ``dovecote-pool.<root>.<service>``, binds it to ``amq.topic`` with the pooled
filters (``+`` becomes ``*``), and each worker consumes from it over AMQP 0-9-1 with a
bounded prefetch, acknowledging a message only when its handler is done. The broker hands
each message to one consumer, spreads them over the pool and gives the unacknowledged ones
of a worker that died to the others. A quorum queue is replicated on the cluster's nodes:
it outlives the loss of one.

Only reading moves to AMQP: every topic, payload and publish stays MQTT, and what arrives
is handed to the dispatcher as the MQTT ``Message`` it was (topic mapped back from the
routing key, the publisher's bytes untouched), so the message's path is the same.

Used when the broker delivers no ``$share`` and ``DOVECOTE_AMQP_URL`` names its AMQP
listener(s) (``amqp://user:pass@host:5672,host2:5672/vhost``); the worker reconnects
forever, to the next node of the list when one is lost (at once; backed off when the node
keeps cutting what it accepted, as the MQTT connection does: ``dovecote.backoff``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

from dovecote.backoff import AfterLoss
from dovecote.errors import ConfigError
from dovecote.mqtt import Backoff, Message

log = logging.getLogger("dovecote.poolqueue")
# pika logs a lost node as an ERROR with a stack, and each (re)connect at INFO: this module
# says both itself, once, as a warning with the reason.
logging.getLogger("pika").setLevel(logging.CRITICAL)

EXCHANGE = "amq.topic"  # where RabbitMQ's MQTT plugin publishes (mqtt.exchange)
PREFETCH = 20  # unacknowledged messages per worker: Mosquitto's in-flight window, alike
BACKOFF = Backoff()
MID_BASE = 1 << 20  # above any MQTT packet id (16 bits): ``is_queue_mid`` tells them apart


def queue_name(root: str, service: str) -> str:
    return f"dovecote-pool.{root}.{service}"


def binding_key(topic_filter: str) -> str:
    """An MQTT filter as an AMQP topic binding key: ``a/+/b/#`` -> ``a.*.b.#``."""
    return ".".join("*" if level == "+" else level for level in topic_filter.split("/"))


def topic_of(routing_key: str) -> str:
    return routing_key.replace(".", "/")


def parse_amqp_urls(raw: str) -> list[str]:
    """``amqp://u:p@h1:5672,h2:5673/vhost`` -> one URL per host, for pika."""
    raw = raw.strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("amqp", "amqps"):
        raise ConfigError(f"DOVECOTE_AMQP_URL: scheme must be amqp or amqps, got {raw!r}")
    auth, _, hosts = parts.netloc.rpartition("@")
    urls = []
    for host in hosts.split(","):
        if not host.strip():
            raise ConfigError(f"DOVECOTE_AMQP_URL: an empty host in {raw!r}")
        netloc = f"{auth}@{host.strip()}" if auth else host.strip()
        urls.append(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))
    return urls


def is_queue_mid(mid: int) -> bool:
    return mid >= MID_BASE


class PoolQueue:
    """Consume a pool's queue; hand each message on as an MQTT ``Message``; ack by mid."""

    def __init__(
        self,
        urls: list[str],
        queue: str,
        filters: list[str],
        on_message: Callable[[Message], None],
        *,
        prefetch: int = PREFETCH,
        backoff: Backoff = BACKOFF,
    ) -> None:
        self.urls = urls
        self.queue = queue
        self.keys = sorted({binding_key(f) for f in filters})
        self._on_message = on_message
        self._prefetch = prefetch
        self._backoff = backoff
        self._mids = itertools.count(MID_BASE)
        self._tags: dict[int, tuple[Any, int]] = {}  # our mid -> (channel, delivery tag)
        self._outstanding: set[int] = set()  # delivery tags of this channel not yet acked
        self._acked: set[int] = set()  # acked by the dispatcher this loop turn, not yet sent
        self._flush_scheduled = False
        self._conn: AsyncioConnection | None = None
        self._channel: Any = None
        self._consumer = ""
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed: asyncio.Event | None = None
        self.ready = asyncio.Event()  # consuming now
        self.connects = 0
        self.url: str | None = None  # the node consumed from now
        self.lost_because = ""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def ack(self, mid: int) -> None:
        """Acknowledge a message handed on; one from a channel since lost is dropped (the
        broker has requeued it and gives it again)."""
        found = self._tags.pop(mid, None)
        if found is None:
            return
        channel, tag = found
        if channel is not self._channel or not channel.is_open:
            return
        self._acked.add(tag)
        if not self._flush_scheduled:  # one flush per loop turn, for every ack of that turn
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks, channel)

    def _flush_acks(self, channel: Any) -> None:
        """Acknowledge this turn's messages: those below the oldest still in a handler with
        one ``multiple`` ack (the usual case: handlers finish in order), the others one by
        one. Fewer frames for the broker, which shares the machine with the workers."""
        self._flush_scheduled = False
        done, self._acked = self._acked, set()
        if channel is not self._channel or not channel.is_open or not done:
            return
        self._outstanding -= done
        floor = min(self._outstanding, default=None)
        below = [t for t in done if floor is None or t < floor]
        if below:
            channel.basic_ack(max(below), multiple=True)
        for tag in done:
            if floor is not None and tag > floor:
                channel.basic_ack(tag)

    @property
    def unacked(self) -> int:
        return len(self._tags)

    def pause(self) -> None:
        """No more deliveries (a worker stopping); acks still go through."""
        if self._channel is not None and self._channel.is_open and self._consumer:
            self._channel.basic_cancel(self._consumer)

    async def stop(self) -> None:
        """Stop consuming and close: what is not acknowledged goes back to the queue."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    async def _close(self) -> None:
        conn = self._conn
        self._conn, self._channel = None, None
        self.ready.clear()
        if conn is not None and not (conn.is_closed or conn.is_closing):
            closed = self._closed
            conn.close()
            if closed is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closed.wait(), 5)

    # --- the connection ---------------------------------------------------------------

    async def _run(self) -> None:
        nodes = itertools.cycle(self.urls)
        after_loss = AfterLoss(self._backoff)
        loop = asyncio.get_running_loop()
        while True:
            failures = 0
            for delay in self._backoff.delays():  # anew after each outage
                url = next(nodes)
                try:
                    await self._consume(url)
                    break
                except Exception as exc:  # anything: retried and said, never a dead pool
                    failures += 1
                    if failures == 1 or failures % 20 == 0:
                        log.warning(
                            "%s: cannot consume from %s (%r); retrying (attempt %d)",
                            self.queue,
                            _redacted(url),
                            exc,
                            failures,
                        )
                    await self._close()
                await asyncio.sleep(delay)
            assert self._closed is not None
            consuming = loop.time()
            await self._closed.wait()  # lost: reconnect, to the next node first
            delay = after_loss.lost(loop.time() - consuming)
            log.warning(
                "%s: lost AMQP node %s (%s); reconnecting%s",
                self.queue,
                _redacted(url),
                self.lost_because,
                f" in {delay:.1f} s ({after_loss.cuts} cut short in a row)" if delay else "",
            )
            await self._close()  # what is left of it (a consumer the broker cancelled)
            if delay:
                await asyncio.sleep(delay)

    async def _consume(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()
        self._closed = closed = asyncio.Event()

        def failed(_: Any, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(_as_error(exc))

        def lost(_: Any, exc: BaseException) -> None:
            failed(_, exc)
            self.ready.clear()
            self.lost_because = repr(exc)
            closed.set()

        params = pika.URLParameters(url)
        params.heartbeat = 10  # a node that vanished is noticed in seconds, not minutes
        params.blocked_connection_timeout = 30
        self._conn = AsyncioConnection(
            params,
            on_open_callback=lambda c: _settle(opened, c),
            on_open_error_callback=failed,
            on_close_callback=lost,
            custom_ioloop=loop,
        )
        conn = await asyncio.wait_for(opened, 15)
        channel = await self._call(lambda cb: conn.channel(on_open_callback=cb))
        channel.add_on_close_callback(lambda _c, exc: lost(None, exc))
        # The broker cancels a consumer whose queue is gone or moved: consume again, anew.
        channel.add_on_cancel_callback(lambda _f: lost(None, ConnectionError("consumer cancelled")))
        await self._call(
            lambda cb: channel.queue_declare(
                self.queue,
                durable=True,
                arguments={"x-queue-type": "quorum"},
                callback=cb,
            )
        )
        for key in self.keys:
            await self._call(functools.partial(self._bind, channel, key))
        await self._call(lambda cb: channel.basic_qos(prefetch_count=self._prefetch, callback=cb))
        self._channel = channel
        self._outstanding, self._acked = set(), set()
        self._consumer = channel.basic_consume(self.queue, self._deliver)
        self.connects += 1
        self.url = url
        self.ready.set()
        log.info(
            "%s: consuming the pool's queue on %s (bound to %s)",
            self.queue,
            _redacted(url),
            ", ".join(self.keys),
        )

    async def _call(self, start: Callable[[Callable[[Any], None]], Any]) -> Any:
        """Run one pika request and wait for its reply (or the connection's loss)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        start(lambda reply: _settle(done, reply))
        assert self._closed is not None
        lost = loop.create_task(self._closed.wait())
        try:
            await asyncio.wait({done, lost}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not done.done():
            raise TimeoutError("no reply from the AMQP node")
        return done.result()

    def _bind(self, channel: Any, key: str, callback: Callable[[Any], None]) -> None:
        channel.queue_bind(self.queue, EXCHANGE, key, callback=callback)

    def _deliver(self, channel: Any, method: Any, props: Any, body: bytes) -> None:
        mid = next(self._mids)
        self._tags[mid] = (channel, method.delivery_tag)
        self._outstanding.add(method.delivery_tag)
        # qos 1 whatever the publisher's: the queue holds it until this worker acks.
        self._on_message(Message(topic_of(method.routing_key), body, 1, False, mid))


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _as_error(exc: BaseException) -> Exception:
    return exc if isinstance(exc, Exception) else ConnectionError(repr(exc))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
