"""Where a worker's pooled messages come from when the broker delivers no shared
subscription (``$share``) and an AMQP URL is set: the pool's queue (``dovecote.poolqueue``),
read by competing consumers; and where each message's ack goes, the queue or the broker."""

from __future__ import annotations

from collections.abc import Callable

from dovecote import pool, poolqueue
from dovecote.config import Settings
from dovecote.mqtt import Message
from dovecote.transport import Transport


class PoolFeed:
    """The pool's queue of one worker, where its plan says to read one (``pool.Plan``)."""

    def __init__(self, settings: Settings, service: str, conn: Transport) -> None:
        raw = settings.get_str("DOVECOTE_AMQP_URL", "")
        self.urls = poolqueue.parse_amqp_urls(raw) if raw else []
        self.name = poolqueue.queue_name(settings.root, service)
        self.conn = conn
        self.queue: poolqueue.PoolQueue | None = None

    async def start(self, plan: pool.Plan, on_message: Callable[[Message], None]) -> None:
        """Bound before the worker says it is online (its Join): from then on what is
        published reaches the pool, as with MQTT subscriptions made before connecting."""
        if not plan.queued:
            return
        self.queue = poolqueue.PoolQueue(self.urls, self.name, plan.pooled, on_message)
        self.queue.start()
        await self.queue.ready.wait()

    def ack(self, mid: int, qos: int) -> None:
        if poolqueue.is_queue_mid(mid):
            if self.queue is not None:
                self.queue.ack(mid)
        else:
            self.conn.ack(mid, qos)

    def pause(self) -> None:
        if self.queue is not None:
            self.queue.pause()

    async def stop(self) -> None:
        """What was handed on and not acked goes back to the pool."""
        if self.queue is not None:
            await self.queue.stop()
