"""One MQTT 3.1.1 connection, as the runtime uses it: the facade of three parts.

- ``loop_socket``: paho's socket on the asyncio event loop (no thread, batched I/O), where
  the PUBLISH packets are read and acknowledged by us (``inbound``), the rest by paho;
- ``reconnect``: connecting, forever, over a cluster's nodes, backed off where it must be;
- ``session``: the subscriptions, kept across reconnects, and the publishes owed a PUBACK;
- here: paho itself (``paho_client``), and what the broker answers, handed to those parts.

``on_message`` is called on the event loop for every message, in arrival order. With
``manual_ack`` a QoS 1 message is acknowledged only when ``ack()`` is called, so a process
killed mid-handler gets it again from its persistent session. ``on_connected(session_present)``
comes with each accepted connection (its SUBSCRIBE already sent), ``on_subscribed()`` when
the broker has granted that SUBSCRIBE, ``on_lost()`` when an accepted connection ends.

A connection is *ready* once the broker has granted the subscriptions sent on it
(``on_subscribed``): accepted is not enough, a RabbitMQ node may accept and then close the
connection on a subscription it cannot make (issue 22). Publishes with QoS 1 made while
disconnected stay queued in paho (bounded) and go out on reconnect. Where it is connected,
or tried last: ``reconnecting.node``; accepted connections cut short so far:
``reconnecting.cut_short``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from dovecote.backoff import AfterLoss, Backoff
from dovecote.config import BrokerAddress
from dovecote.errors import BusError
from dovecote.mqtt.loop_socket import LoopSocket
from dovecote.mqtt.messages import Message, Will
from dovecote.mqtt.reconnect import Node, Reconnecting
from dovecote.mqtt.session import Subscriptions, Unacknowledged

log = logging.getLogger("dovecote.mqtt")
BACKOFF = Backoff()


def paho_client(
    broker: BrokerAddress,
    client_id: str,
    *,
    clean_session: bool,
    manual_ack: bool,
    max_queued: int,
    keepalive: int,
    will: Will | None,
) -> paho.Client:
    transport: Literal["websockets", "tcp"] = "websockets" if broker.websockets else "tcp"
    c = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=paho.MQTTv311,
        transport=transport,
        manual_ack=manual_ack,
    )
    c.max_inflight_messages_set(100)  # docs/performance.md: ~100 is paho's sweet spot
    c.max_queued_messages_set(max_queued)
    c.suppress_exceptions = True  # a bug in a callback is logged, never kills the loop
    if broker.username:
        c.username_pw_set(broker.username, broker.password)
    if broker.tls:
        # Certificate and host name verified, against MQTT_CA_FILE or the system's CAs.
        c.tls_set_context(ssl.create_default_context(cafile=broker.ca_file))
    if broker.websockets:
        c.ws_set_options(path=broker.path)
    if will is not None:
        c.will_set(will.topic, will.payload, will.qos, will.retain)
    c.connect_async(broker.host, broker.port, keepalive)
    return c


class Connection:
    """One MQTT 3.1.1 client connection (3.1.1: RabbitMQ does not speak 5, docs/brokers.md);
    the module's docstring says what its callbacks are told when."""

    def __init__(
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
        max_queued: int = 10_000,
        manual_ack: bool = True,
        backoff: Backoff = BACKOFF,
        after_loss: AfterLoss | None = None,
        quiet: bool = False,
    ) -> None:
        self.broker = broker
        self._connect_level = logging.DEBUG if quiet else logging.INFO  # a short-lived helper
        self.client_id = client_id
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._keepalive = keepalive
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.connected = asyncio.Event()
        self.ready = asyncio.Event()  # connected, and the subscriptions sent on it granted
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        self.connects = 0  # successful CONNACKs, for logs, tests and metrics
        self.published = 0  # messages handed to paho (metrics)
        self._client = c = paho_client(
            broker,
            client_id,
            clean_session=clean_session,
            manual_ack=manual_ack,
            max_queued=max_queued,
            keepalive=keepalive,
            will=will,
        )
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.on_message = self._handle_message  # QoS 2 only: the reader leaves it to paho
        auto = not manual_ack  # acknowledged as soon as on_message returns
        self.socket = LoopSocket(c, lambda: self._stopping, on_message, self._undecodable, auto)
        self.subscriptions = Subscriptions(c, client_id)
        self._unacked = Unacknowledged()
        c.on_subscribe = self.subscriptions.on_suback
        c.on_publish = self._unacked.on_puback
        self.reconnecting = Reconnecting(
            broker,
            client_id,
            dial=self._dial,
            attempt=self._attempt,
            stopping=lambda: self._stopping,
            keepalive=keepalive,
            backoff=backoff,
            after_loss=after_loss if after_loss is not None else AfterLoss(backoff),
        )

    # --- public API ----------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting (and reconnecting, forever). Returns at once."""
        if self.reconnecting.task is not None or self._stopping:
            return
        self._loop = asyncio.get_running_loop()
        self.socket.attach(self._loop)
        self.subscriptions.attach(self._loop)
        self._unacked.start()
        self.reconnecting.start(on_broken=self.connected.clear)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Until connected (TimeoutError after ``timeout``). BusError if this connection has
        stopped reconnecting (``wait_broken``): waiting on would be waiting for ever."""
        await self.reconnecting.until(self.connected, timeout)

    async def wait_broken(self) -> BaseException:
        """Returns only if this connection has stopped reconnecting for good, unasked (a
        bug, logged): why. Nothing else will bring it back; its owner should exit."""
        await self.reconnecting.broken.wait()
        assert self.reconnecting.broken_by is not None
        return self.reconnecting.broken_by

    def subscribe(self, topic_filter: str, qos: int) -> asyncio.Future[list[int]] | None:
        """Subscribe now if connected, and again after every reconnect.

        Returns a future of the granted QoS list (0x80 = refused) when sent now.
        """
        return self.subscriptions.add(topic_filter, qos, self.connected.is_set())

    def unsubscribe(self, *filters: str) -> None:
        """Forget filters, now (if connected) and on later reconnects.

        Also for filters this process never subscribed: a persistent session keeps the
        subscriptions of a previous run, which may have used another form of a filter.
        """
        self.subscriptions.remove(filters, self.connected.is_set())

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_acked: Callable[[], None] | None = None,
    ) -> None:
        """Queue a message. QoS 1 survives a disconnect (queued, bounded); QoS 0 does not.

        ``on_acked`` runs on the loop when the broker has acknowledged a QoS 1 message (for
        an outbox: the message is the broker's responsibility from then on).
        """
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise BusError(f"outgoing queue full; {topic} not published")
        self.published += 1
        if qos > 0:
            self._unacked.sent(info.mid, on_acked)

    def ack(self, mid: int, qos: int) -> None:
        if qos == 1:
            self.socket.puback(mid)
        elif qos == 2:
            self._client.ack(mid, qos)

    @property
    def unacknowledged(self) -> int:
        """QoS 1 publishes the broker has not yet acknowledged."""
        return len(self._unacked)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the broker has acknowledged every QoS 1 publish. False on timeout."""
        return await self._unacked.flush(timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed, then disconnect cleanly (no Last Will)."""
        self._stopping = True
        await self.reconnecting.stop()
        if self.connected.is_set():
            # Stopping, we never reconnect: a broker gone mid-flush will not ack the rest.
            flushed = asyncio.ensure_future(self.flush(timeout))
            lost = asyncio.ensure_future(self.disconnected.wait())
            await asyncio.wait({flushed, lost}, return_when=asyncio.FIRST_COMPLETED)
            for waiting in (flushed, lost):
                waiting.cancel()
            self._client.disconnect()
            try:
                await asyncio.wait_for(self.disconnected.wait(), timeout)
            except TimeoutError:
                log.warning("%s: broker did not see a clean disconnect", self.client_id)
        self.socket.close()  # paho closed it if it disconnected; else (still connecting) we do
        self.socket.stop_misc()

    def drop(self) -> None:
        """Close the socket without DISCONNECT, as a crash would: the broker sends the will."""
        self._stopping = True
        self.reconnecting.cancel()
        self.socket.close()  # the raw socket: nothing buffered is sent

    # --- connecting (``Reconnecting`` runs it) -------------------------------------------

    def _dial(self, node: Node) -> None:
        """Connect to ``node`` (in a thread: it blocks)."""
        if len(self.broker.nodes) > 1:  # paho's reconnect() goes where connect_async() said
            self._client.connect_async(*node, self._keepalive)
        self._client.reconnect()

    def _attempt(self, begun: bool) -> None:
        if begun:
            self.disconnected.clear()
        else:  # failed: what the attempt opened is done with
            self.socket.unwatch()
            self.disconnected.set()

    # --- what the broker says ------------------------------------------------------------

    def _handle_connect(
        self, client: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any
    ) -> None:
        self.reconnecting.answered(not reason.is_failure)
        if reason.is_failure:
            # Refused (bad credentials, ...): the broker closes the socket; we retry slowly.
            log.error("%s: broker refused the connection: %s", self.client_id, reason)
            return
        self.connects += 1
        log.log(
            self._connect_level,
            "%s: connected to %s (session %s)",
            self.client_id,
            self.broker.node_url(*self.reconnecting.node),
            "resumed" if flags.session_present else "new",
        )
        self.connected.set()
        self.socket.start_misc()
        this = self.connects
        granted = self.subscriptions.connected()
        if granted is not None:
            granted.add_done_callback(lambda answer: self._granted(answer, this))
        else:
            assert self._loop is not None
            self._loop.call_soon(self._is_ready, this)
        if self._on_connected is not None:
            self._on_connected(bool(flags.session_present))

    def _granted(self, answer: asyncio.Future[list[int]], connection: int) -> None:
        if answer.cancelled() or answer.exception() is not None:
            return  # lost before the SUBACK: that connection never was ready
        self._is_ready(connection)

    def _is_ready(self, connection: int) -> None:
        if connection != self.connects or not self.connected.is_set():
            return  # an answer on a connection since lost
        self.ready.set()
        if self._on_subscribed is not None:
            self._on_subscribed()

    def _handle_disconnect(
        self, client: paho.Client, _u: Any, _flags: Any, reason: Any, _p: Any
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.ready.clear()
        self.disconnected.set()
        self.reconnecting.closed()  # connects again
        self.subscriptions.lost()
        if was_connected and self._on_lost is not None:
            self._on_lost()
        if self._stopping:
            return
        if was_connected:
            log.warning("%s: lost the broker (%s); reconnecting", self.client_id, reason)

    def _undecodable(self, qos: int, mid: int) -> None:
        log.error("%s: dropped a message whose topic is not UTF-8", self.client_id)
        self.ack(mid, qos)

    def _handle_message(self, client: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        try:
            topic = m.topic
        except UnicodeDecodeError:
            self._undecodable(m.qos, m.mid)
            return
        self._on_message(Message(topic, bytes(m.payload), m.qos, bool(m.retain), m.mid))
