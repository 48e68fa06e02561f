"""What the runtime needs from a connection to the bus, and how it makes one.

``dovecote.mqtt.Connection`` (paho on asyncio, a real broker) is what every service runs
on. The test plugin's in-memory bus (``dovecote_testing.memory``) is the other: with it a
service's handlers run through a real ``Worker`` and its dispatch with no broker at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from dovecote.config import BrokerAddress
from dovecote.mqtt import Message, Will


class Transport(Protocol):
    """One client connection: QoS 0/1, retained messages, a Last Will, manual acks."""

    broker: BrokerAddress
    client_id: str
    connected: asyncio.Event
    ready: asyncio.Event  # connected, and the subscriptions sent on connecting granted
    disconnected: asyncio.Event
    connects: int  # successful connections so far
    published: int  # messages handed over to be published so far (metrics)

    def start(self) -> None: ...

    async def wait_connected(self, timeout: float | None = None) -> None: ...

    async def wait_broken(self) -> BaseException:
        """Returns only if the connection will never reconnect on its own (a bug): why."""
        ...

    def subscribe(self, topic_filter: str, qos: int) -> asyncio.Future[list[int]] | None: ...

    def unsubscribe(self, *filters: str) -> None: ...

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_acked: Callable[[], None] | None = None,
    ) -> None: ...

    def ack(self, mid: int, qos: int) -> None: ...

    @property
    def unacknowledged(self) -> int: ...

    async def flush(self, timeout: float = 5.0) -> bool: ...

    async def stop(self, timeout: float = 5.0) -> None: ...

    def drop(self) -> None: ...


class Connect(Protocol):
    """Makes a ``Transport``: ``dovecote.mqtt.Connection`` itself, or a test bus's own."""

    def __call__(
        self,
        broker: BrokerAddress,
        client_id: str,
        *,
        on_message: Callable[[Message], None],
        clean_session: bool = ...,
        keepalive: int = ...,
        will: Will | None = ...,
        on_connected: Callable[[bool], None] | None = ...,
        on_subscribed: Callable[[], None] | None = ...,
        on_lost: Callable[[], None] | None = ...,
        manual_ack: bool = ...,
        quiet: bool = ...,
    ) -> Transport: ...
