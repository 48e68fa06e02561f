"""What one connection's session owes the broker and is owed: the subscriptions, kept and
sent again on every connection, with their SUBACKs; the QoS 1 publishes and their PUBACKs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from dovecote.errors import BusError

log = logging.getLogger("dovecote.mqtt")


class Subscriptions:
    """The filters to subscribe to on every connection, and the SUBACKs awaited."""

    def __init__(self, client: paho.Client, client_id: str) -> None:
        self._client = client
        self.client_id = client_id
        self.filters: dict[str, int] = {}
        self._unsubscribe_on_connect: set[str] = set()
        self._pending: dict[int, asyncio.Future[list[int]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add(self, topic_filter: str, qos: int, now: bool) -> asyncio.Future[list[int]] | None:
        self.filters[topic_filter] = qos
        return self.send([(topic_filter, qos)]) if now else None

    def remove(self, filters: tuple[str, ...], now: bool) -> None:
        for f in filters:
            self.filters.pop(f, None)
        if not filters:
            return
        if now:
            self._client.unsubscribe(list(filters))
        else:
            self._unsubscribe_on_connect.update(filters)

    def connected(self) -> asyncio.Future[list[int]] | None:
        """On a new connection: what was given up meanwhile, then every filter; the SUBACK."""
        if self._unsubscribe_on_connect:  # before SUBSCRIBE: the broker acts in order
            self._client.unsubscribe(sorted(self._unsubscribe_on_connect))
            self._unsubscribe_on_connect.clear()
        return self.send(list(self.filters.items())) if self.filters else None

    def send(self, filters: list[tuple[str, int]]) -> asyncio.Future[list[int]]:
        assert self._loop is not None
        fut: asyncio.Future[list[int]] = self._loop.create_future()
        rc, mid = self._client.subscribe(filters)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            fut.set_exception(BusError(f"subscribe failed: {paho.error_string(rc)}"))
        else:
            self._pending[mid] = fut
        return fut

    def on_suback(self, client: paho.Client, _u: Any, mid: int, codes: list[Any], _p: Any) -> None:
        granted = [int(code.value) for code in codes]
        if any(g >= 0x80 for g in granted):
            log.error("%s: broker refused a subscription (codes %s)", self.client_id, granted)
        fut = self._pending.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(granted)

    def lost(self) -> None:
        """The connection is gone: no SUBACK awaited will come."""
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BusError("disconnected before SUBACK"))
                fut.exception()  # whoever still awaits it gets it; no one left: not logged
        self._pending.clear()


class Unacknowledged:
    """QoS 1 publishes the broker has not yet acknowledged (PUBACK), and what to do then."""

    def __init__(self) -> None:
        self._mids: set[int] = set()
        self._on_acked: dict[int, Callable[[], None]] = {}  # mid -> what to do on PUBACK
        self._drained: asyncio.Event | None = None

    def start(self) -> None:
        """On the running loop (``Connection.start``): ``flush`` waits from then on."""
        self._drained = asyncio.Event()
        self._drained.set()

    def __len__(self) -> int:
        return len(self._mids)

    def sent(self, mid: int, on_acked: Callable[[], None] | None) -> None:
        self._mids.add(mid)
        if on_acked is not None:
            self._on_acked[mid] = on_acked
        if self._drained is not None:
            self._drained.clear()

    def on_puback(self, client: paho.Client, _u: Any, mid: int, _reason: Any, _p: Any) -> None:
        self._mids.discard(mid)
        done = self._on_acked.pop(mid, None)
        if done is not None:
            done()
        if not self._mids and self._drained is not None:
            self._drained.set()

    async def flush(self, timeout: float) -> bool:
        """Until the broker has acknowledged every one. False on timeout."""
        if self._drained is None or not self._mids:
            return True
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return True
