"""When the retained messages of a worker's subscriptions have all arrived.

A marker the worker publishes on its own connection after its SUBSCRIBE comes back after
the retained messages of those subscriptions, which the broker sends first. Then the service
is told, once (``Service.retained_arrived``), after the handlers of those messages have run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from dovecote import activity as act
from dovecote import topics
from dovecote.errors import InvalidActivity
from dovecote.mqtt import Message
from dovecote.service import Bus, Service
from dovecote.transport import Transport

RETAINED_WAIT = 10.0  # seconds the service waits for the retained messages' handlers


class RetainedArrival:
    """``handling()``: the tasks handling retained messages now (the dispatcher's)."""

    def __init__(
        self,
        conn: Transport,
        bus: Bus,
        service: Service,
        handling: Callable[[], set[asyncio.Task[None]]],
        log: logging.Logger,
    ) -> None:
        self.conn = conn
        self.bus = bus
        self.service = service
        self._handling = handling
        self.log = log
        token = f"{bus.service}-{bus.instance}"[:64]
        self.topic = topics.PROBE.address(bus.root, token=token, check="marker")
        self._marker: str | None = None  # the id of the marker in flight
        self._arrived: asyncio.Task[None] | None = None

    def connected(self) -> None:
        """Send the marker, until it has come back once."""
        if self._arrived is None:
            marker = act.Activity(
                **act.envelope(),
                type="Create",
                actor=self.bus.actor,
                object={"type": "Note", "name": "marker"},
            )
            self._marker = marker.id
            self.conn.publish(self.topic, act.encode(marker), 1, False)

    def on_marker(self, msg: Message) -> None:
        """Our marker is back: the retained messages subscribed before it came first (a
        copy left from an earlier run of this worker has another id, and is ignored)."""
        self.conn.ack(msg.mid, msg.qos)
        try:
            mine = topics.PROBE.codec.decode(msg.payload).id == self._marker
        except InvalidActivity:
            mine = False
        if mine and self._arrived is None:
            self._arrived = asyncio.get_running_loop().create_task(self._tell())

    def cancel(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.cancel()

    async def _tell(self) -> None:
        # The retained messages' handlers still running, if any (not every handler: one may
        # itself be waiting for this, as the builder's first Start does).
        handling = set(self._handling())
        if handling:
            await asyncio.wait(handling, timeout=RETAINED_WAIT)
        self.conn.unsubscribe(self.topic)
        try:
            await self.service.retained_arrived()
        except Exception:
            self.log.exception("retained_arrived failed")
