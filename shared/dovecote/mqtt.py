"""paho-mqtt on the asyncio event loop: the only module of Dovecote that imports paho.

paho does the protocol; asyncio does the waiting. The socket is watched with
``loop.add_reader`` and paho's ``loop_read`` runs right there, so an incoming message is
handed to ``on_message`` synchronously, with no thread and no queue hop
(docs/performance.md: an extra hop per message halves paho's rate). Writes are batched:
paho asks for a write, we flush once at the end of the current loop iteration, and watch
for writability only when the kernel's buffer is full.

Reconnection is ours: forever, with capped exponential backoff and jitter, over the nodes
``MQTT_URL`` names in turn (a cluster: a lost node is left for the next at once; a broker
that keeps cutting connections it accepted is backed off from: ``dovecote.backoff``). One
task does it for the life of the connection (``_stay_connected``): connect, wait for the
loss, connect again. A connection is *ready* once the broker has granted the subscriptions
sent on it (``on_subscribed``): accepted is not enough, a RabbitMQ node may accept and then
close the connection on a subscription it cannot make (issue 22). The blocking TCP
connect runs in a thread so that a slow or absent broker never stalls the loop. Publishes
with QoS 1 made while disconnected stay queued in paho (bounded) and go out on reconnect.
Should that task ever die (a bug), the connection says so (``wait_broken``) rather than sit
there disconnected: a worker exits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from dovecote.backoff import AfterLoss
from dovecote.backoff import Backoff as Backoff  # re-exported: mqtt.Backoff
from dovecote.config import BrokerAddress
from dovecote.errors import BusError as BusError  # re-exported: mqtt.BusError

log = logging.getLogger("dovecote.mqtt")
BACKOFF = Backoff()


@dataclass(frozen=True, slots=True)
class Message:
    """One message as it arrived: the payload is the broker's bytes, untouched."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def _no_delay(sock: Any) -> None:
    """Send each write at once (TCP_NODELAY). Writes are already one per loop turn
    (``_BufferedSocket``), so this adds no small packets; without it, Nagle held a write
    back until the broker acknowledged the previous one, which a delayed ACK makes wait
    40 ms: a question and its answer on the bus (a page's inbox) took 88 ms, not 2
    (docs/performance.md)."""
    raw = getattr(sock, "_socket", sock)  # paho's websocket wrapper holds the real socket
    with contextlib.suppress(OSError, AttributeError):
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _BufferedSocket:
    """paho reads a packet with 3-4 ``recv`` calls and writes each packet with its own
    ``send``. Under paho, this turns a loop iteration's reads into one ``recv`` of up to 64 KiB
    and its writes (e.g. a batch of PUBACKs) into one ``send``.
    """

    __slots__ = ("_buf", "_out", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self._out = bytearray()

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            self._buf = self._sock.recv(65536)  # BlockingIOError propagates: paho expects it
            self._pos = 0
            if not self._buf:
                return b""
        chunk = self._buf[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return self.buffered() + int(inner)

    def send(self, data: bytes | bytearray) -> int:
        self._out += data
        return len(data)

    def flush(self) -> bool:
        """Send what paho wrote; False if the kernel buffer is full (try again when writable)."""
        while self._out:
            try:
                sent = self._sock.send(self._out)
            except (BlockingIOError, ssl.SSLWantWriteError):
                return False
            del self._out[:sent]
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.flush()  # e.g. the DISCONNECT paho has just "sent"
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Connection:
    """One MQTT 3.1.1 client connection (3.1.1: RabbitMQ does not speak 5, docs/brokers.md).

    ``on_message`` is called on the event loop for every message, in arrival order. With
    ``manual_ack`` a QoS 1 message is acknowledged only when ``ack()`` is called, so a
    process killed mid-handler gets it again from its persistent session.

    ``on_connected(session_present)`` comes with each accepted connection (its SUBSCRIBE
    already sent), ``on_subscribed()`` when the broker has granted that SUBSCRIBE (the
    connection is usable: ``ready``), ``on_lost()`` when an accepted connection ends.
    """

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
        self.node = broker.nodes[0]  # (host, port) of the node connected to, or tried last
        self._tried = 0  # connection attempts, over the nodes in turn
        self._connect_level = logging.DEBUG if quiet else logging.INFO  # a short-lived helper
        self.client_id = client_id
        self._on_message = on_message
        self._on_connected = on_connected
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._keepalive = keepalive
        self._backoff = backoff
        self._after_loss = after_loss if after_loss is not None else AfterLoss(backoff)
        self._subscriptions: dict[str, int] = {}
        self._unsubscribe_on_connect: set[str] = set()
        self._pending_subacks: dict[int, asyncio.Future[list[int]]] = {}
        self._unacked_out: set[int] = set()
        self._on_acked: dict[int, Callable[[], None]] = {}  # mid -> what to do on PUBACK
        self._drained: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._sock: _BufferedSocket | None = None
        self._fd = -1
        self._writer_registered = False
        self._write_scheduled = False
        self._misc_handle: asyncio.TimerHandle | None = None
        self._connector: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = asyncio.Event()
        self.ready = asyncio.Event()  # connected, and the subscriptions sent on it granted
        self.disconnected = asyncio.Event()
        self.disconnected.set()
        # The current attempt's outcome, made before it starts: nothing can happen unseen.
        self._answer: asyncio.Future[None] | None = None  # accepted (or dropped unanswered)
        self._ended: asyncio.Future[None] | None = None  # its socket closed
        self._answered = False  # a CONNACK came, accepting or refusing
        self._broken = asyncio.Event()
        self.broken_by: BaseException | None = None  # why reconnecting stopped for good
        self.connects = 0  # successful CONNACKs, for logs, tests and metrics
        self.cut_short = 0  # accepted connections lost before they held (``AfterLoss``)
        self.published = 0  # messages handed to paho (metrics)

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
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.on_message = self._handle_message
        c.on_subscribe = self._handle_subscribe
        c.on_publish = self._handle_publish
        c.on_socket_open = self._socket_open
        c.on_socket_close = self._socket_close
        c.on_socket_register_write = self._socket_want_write
        c.on_socket_unregister_write = self._socket_done_writing
        c.connect_async(broker.host, broker.port, keepalive)
        self._client = c

    # --- public API ----------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting (and reconnecting, forever). Returns at once."""
        if self._connector is not None or self._stopping:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._drained = asyncio.Event()
        self._drained.set()
        self._connector = self._loop.create_task(self._stay_connected())
        self._connector.add_done_callback(self._connector_ended)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Until connected (TimeoutError after ``timeout``). BusError if this connection has
        stopped reconnecting (``wait_broken``): waiting on would be waiting for ever."""
        if not self._broken.is_set():
            connected = asyncio.ensure_future(self.connected.wait())
            broken = asyncio.ensure_future(self._broken.wait())
            try:
                done, _ = await asyncio.wait(
                    {connected, broken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                connected.cancel()
                broken.cancel()
            if connected in done:
                return
            if not done:
                raise TimeoutError(f"{self.client_id}: not connected within {timeout} s")
        raise BusError(
            f"{self.client_id}: stopped reconnecting to the broker: {self.broken_by!r}"
        ) from self.broken_by

    async def wait_broken(self) -> BaseException:
        """Returns only if this connection has stopped reconnecting for good, unasked (a
        bug, logged): why. Nothing else will bring it back; its owner should exit."""
        await self._broken.wait()
        assert self.broken_by is not None
        return self.broken_by

    def subscribe(self, topic_filter: str, qos: int) -> asyncio.Future[list[int]] | None:
        """Subscribe now if connected, and again after every reconnect.

        Returns a future of the granted QoS list (0x80 = refused) when sent now.
        """
        self._subscriptions[topic_filter] = qos
        if not self.connected.is_set():
            return None
        return self._send_subscribe([(topic_filter, qos)])

    def unsubscribe(self, *filters: str) -> None:
        """Forget filters, now (if connected) and on later reconnects.

        Also for filters this process never subscribed: a persistent session keeps the
        subscriptions of a previous run, which may have used another form of a filter.
        """
        for f in filters:
            self._subscriptions.pop(f, None)
        if not filters:
            return
        if self.connected.is_set():
            self._client.unsubscribe(list(filters))
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
        """Queue a message. QoS 1 survives a disconnect (queued, bounded); QoS 0 does not.

        ``on_acked`` runs on the loop when the broker has acknowledged a QoS 1 message (for
        an outbox: the message is the broker's responsibility from then on).
        """
        info = self._client.publish(topic, payload, qos, retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise BusError(f"outgoing queue full; {topic} not published")
        self.published += 1
        if qos > 0:
            self._unacked_out.add(info.mid)
            if on_acked is not None:
                self._on_acked[info.mid] = on_acked
            if self._drained is not None:
                self._drained.clear()

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            self._client.ack(mid, qos)

    @property
    def unacknowledged(self) -> int:
        """QoS 1 publishes the broker has not yet acknowledged."""
        return len(self._unacked_out)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the broker has acknowledged every QoS 1 publish. False on timeout."""
        if self._drained is None or not self._unacked_out:
            return True
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 5.0) -> None:
        """Flush what can be flushed, then disconnect cleanly (no Last Will)."""
        self._stopping = True
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connector
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
        sock = self._sock  # paho closed it if it disconnected; else (still connecting) we do
        self._teardown_socket()
        if sock is not None:
            sock._sock.close()
        if self._misc_handle is not None:
            self._misc_handle.cancel()

    def drop(self) -> None:
        """Close the socket without DISCONNECT, as a crash would: the broker sends the will."""
        self._stopping = True
        if self._connector is not None:
            self._connector.cancel()
        sock = self._sock
        self._teardown_socket()
        if sock is not None:
            sock._sock.close()  # the raw socket: nothing buffered is sent

    # --- connecting ----------------------------------------------------------------------

    async def _stay_connected(self) -> None:
        """Connect; wait until the connection is lost; connect again: until ``stop``.

        The one task that ever connects, for the life of this object. A task per loss
        missed losses (issue 11): a CONNACK and, at once, a session takeover's hang-up, both
        before the connecting task had looked, set and cleared ``connected`` unseen; the loss
        found that task still running and started none, and the task then waited the
        keepalive (30 s, ``MQTT_KEEPALIVE`` up to an hour) for an answer come and gone.
        Here each attempt's answer and end are futures made before it starts.
        """
        assert self._loop is not None
        while not self._stopping:
            ended = await self._connect()
            accepted = self._loop.time()
            await ended  # a loss is seen even if it came before this line
            lived = self._loop.time() - accepted
            # From the next node (``_tried``): a lost node is left for the next. At once
            # after a connection that held; backed off while they are cut short in a row.
            delay = self._after_loss.lost(lived)
            if lived < self._after_loss.held_after:
                self.cut_short += 1
            if delay and not self._stopping:
                log.warning(
                    "%s: the broker cut the connection %.2f s after accepting it (%d in a "
                    "row); connecting again in %.1f s",
                    self.client_id,
                    lived,
                    self._after_loss.cuts,
                    delay,
                )
                await asyncio.sleep(delay)

    def _connector_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return  # stopped, as asked
        self.broken_by = task.exception()
        log.critical(
            "%s: stopped reconnecting to the broker on an unexpected error",
            self.client_id,
            exc_info=self.broken_by,
        )
        self.connected.clear()
        self._broken.set()

    async def _connect(self) -> asyncio.Future[None]:
        """Until a connection is accepted: its ``ended``, done when its socket closes."""
        assert self._loop is not None
        failures = 0
        nodes = self.broker.nodes
        delays = self._backoff.delays()  # one delay after each round of the nodes
        while True:
            # A cluster's nodes (MQTT_URL=mqtt://a:1883,b:1884,...) in turn, from the one after
            # the last tried: a node that is lost or refuses is left for the next at once.
            self.node = nodes[self._tried % len(nodes)]
            self._tried += 1
            if len(nodes) > 1:  # paho's reconnect() goes where connect_async() last said
                self._client.connect_async(*self.node, self._keepalive)
            answer = self._answer = self._loop.create_future()
            ended = self._ended = self._loop.create_future()
            self._answered = False
            self.disconnected.clear()
            try:
                await self._loop.run_in_executor(None, self._client.reconnect)
                await self._connack(answer)
                return ended
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    log.warning(
                        "%s: cannot reach broker %s (%s); retrying (attempt %d)",
                        self.client_id,
                        self.broker.node_url(*self.node),
                        exc or type(exc).__name__,
                        failures,
                    )
                self._teardown_socket()
                self.disconnected.set()
                if self._tried % len(nodes):
                    continue  # the next node at once; the backoff delay after a whole round
            await asyncio.sleep(next(delays))

    async def _connack(self, answer: asyncio.Future[None]) -> None:
        """Until this attempt is accepted. It is over if the socket drops first (a broker
        dying as it accepted us): no CONNACK can come on it, so no waiting the keepalive."""
        # asyncio.wait, not wait_for: on 3.11 a cancellation (stop) that comes with the
        # answer is swallowed by wait_for, and this task would outlive the stop.
        await asyncio.wait({answer}, timeout=self._keepalive)
        if not answer.done():
            # Refused (bad credentials, ...): the broker closed the socket; we retry slowly.
            raise TimeoutError(f"no CONNACK accepting the connection within {self._keepalive} s")
        answer.result()  # dropped before answering: ConnectionResetError

    def _handle_connect(
        self, client: paho.Client, _u: Any, flags: Any, reason: Any, _p: Any
    ) -> None:
        self._answered = True
        if reason.is_failure:
            # Refused (bad credentials, ...): the broker closes the socket; we retry slowly.
            log.error("%s: broker refused the connection: %s", self.client_id, reason)
            return
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(None)
        self.connects += 1
        log.log(
            self._connect_level,
            "%s: connected to %s (session %s)",
            self.client_id,
            self.broker.node_url(*self.node),
            "resumed" if flags.session_present else "new",
        )
        self.connected.set()
        self._schedule_misc()
        if self._unsubscribe_on_connect:  # before SUBSCRIBE: the broker acts in order
            self._client.unsubscribe(sorted(self._unsubscribe_on_connect))
            self._unsubscribe_on_connect.clear()
        this = self.connects
        if self._subscriptions:
            granted = self._send_subscribe(list(self._subscriptions.items()))
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
        answer, ended = self._answer, self._ended
        if answer is not None and not answer.done() and not self._answered:
            answer.set_exception(
                ConnectionResetError("the broker closed the connection before answering it")
            )
            answer.exception()  # retrieved: an attempt given up on has no one awaiting it
        if ended is not None and not ended.done():
            ended.set_result(None)  # _stay_connected connects again
        for fut in self._pending_subacks.values():
            if not fut.done():
                fut.set_exception(BusError("disconnected before SUBACK"))
                fut.exception()  # whoever still awaits it gets it; no one left: not logged
        self._pending_subacks.clear()
        if was_connected and self._on_lost is not None:
            self._on_lost()
        if self._stopping:
            return
        if was_connected:
            log.warning("%s: lost the broker (%s); reconnecting", self.client_id, reason)

    def _send_subscribe(self, filters: list[tuple[str, int]]) -> asyncio.Future[list[int]]:
        assert self._loop is not None
        fut: asyncio.Future[list[int]] = self._loop.create_future()
        rc, mid = self._client.subscribe(filters)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            fut.set_exception(BusError(f"subscribe failed: {paho.error_string(rc)}"))
        else:
            self._pending_subacks[mid] = fut
        return fut

    def _handle_subscribe(
        self, client: paho.Client, _u: Any, mid: int, codes: list[Any], _p: Any
    ) -> None:
        granted = [int(code.value) for code in codes]
        if any(g >= 0x80 for g in granted):
            log.error("%s: broker refused a subscription (codes %s)", self.client_id, granted)
        fut = self._pending_subacks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(granted)

    def _handle_publish(
        self, client: paho.Client, _u: Any, mid: int, _reason: Any, _p: Any
    ) -> None:
        self._unacked_out.discard(mid)
        done = self._on_acked.pop(mid, None)
        if done is not None:
            done()
        if not self._unacked_out and self._drained is not None:
            self._drained.set()

    def _handle_message(self, client: paho.Client, _u: Any, m: paho.MQTTMessage) -> None:
        try:
            topic = m.topic
        except UnicodeDecodeError:
            log.error("%s: dropped a message whose topic is not UTF-8", self.client_id)
            self.ack(m.mid, m.qos)
            return
        self._on_message(Message(topic, bytes(m.payload), m.qos, bool(m.retain), m.mid))

    # --- the socket on the event loop --------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the loop; paho calls some callbacks from the connect thread."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _socket_open(self, client: paho.Client, _u: Any, sock: Any) -> None:
        _no_delay(sock)
        # The one reach into paho's internals: it reads and writes through ``_sock``, so
        # swapping in the buffered wrapper here (before CONNECT is queued) batches its I/O.
        buffered = _BufferedSocket(sock)
        client._sock = buffered
        self._call(self._watch, buffered)

    def _watch(self, sock: _BufferedSocket) -> None:
        assert self._loop is not None
        if self._stopping:
            sock._sock.close()  # a connect that finished after stop(): nobody will read it
            return
        self._sock = sock
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._readable)

    def _socket_close(self, client: paho.Client, _u: Any, sock: Any) -> None:
        self._call(self._unwatch, sock)

    def _unwatch(self, sock: Any) -> None:
        if sock is self._sock:
            self._teardown_socket()

    def _teardown_socket(self) -> None:
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._sock = None
        self._fd = -1
        self._writer_registered = False

    def _readable(self) -> None:
        read = self._client.loop_read
        read()
        # Everything already buffered is handled in this same loop iteration, so acks and
        # publishes it causes go out in one write. Bounded, to let other work run.
        for _ in range(2000):
            sock = self._sock
            if sock is None or not sock.pending():
                return
            read()
        assert self._loop is not None
        self._loop.call_soon(self._readable)

    def _socket_want_write(self, client: paho.Client, _u: Any, sock: Any) -> None:
        self._call(self._schedule_write)

    def _schedule_write(self) -> None:
        # Batch: everything queued during this loop iteration goes out in one flush.
        if not self._write_scheduled:
            self._write_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush_writes)

    def _flush_writes(self) -> None:
        self._write_scheduled = False
        sock = self._sock
        if sock is None:
            return
        self._client.loop_write()  # paho hands every queued packet to the buffer
        sock = self._sock  # a DISCONNECT written just now closes it
        if sock is None:
            return
        done = sock.flush()
        assert self._loop is not None
        if not done and not self._writer_registered:
            self._loop.add_writer(self._fd, self._flush_writes)  # kernel buffer full
            self._writer_registered = True
        elif done and self._writer_registered:
            self._loop.remove_writer(self._fd)
            self._writer_registered = False

    def _socket_done_writing(self, client: paho.Client, _u: Any, sock: Any) -> None:
        pass  # writability is watched only while our own buffer cannot drain

    def _schedule_misc(self) -> None:
        assert self._loop is not None
        if self._misc_handle is not None:
            self._misc_handle.cancel()
        self._misc_handle = self._loop.call_later(1.0, self._misc)

    def _misc(self) -> None:
        # Keepalive pings and ping timeouts; paho detects a dead broker here.
        if self._sock is None:
            self._misc_handle = None
            return
        self._client.loop_misc()
        self._schedule_misc()
