"""paho's socket on the asyncio event loop: no thread, no queue hop, batched I/O.

paho does the protocol's state; asyncio does the waiting; the reading is ours. The socket is
watched with ``loop.add_reader``; each wake-up reads up to 64 KiB at a time and cuts it into
packets there (``inbound.Inbound``): a PUBLISH of QoS 0 or 1 reaches ``on_message``
synchronously, with no thread and no queue hop (docs/performance.md: an extra hop per
message halves paho's rate), and every other packet is handed to paho's ``loop_read``
whole. The PUBACKs are written here too (``puback``). Writes are batched: those of the
handlers run by one read go out in one ``send`` as the read ends; any other (paho's, a
PUBACK from a handler that awaited) once at the end of the current loop iteration; and
writability is watched only when the kernel's buffer is full. ``loop_misc`` (keepalive
pings, a dead broker noticed) runs once a second while an accepted connection's socket is
open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from dovecote.mqtt.inbound import Inbound, puback
from dovecote.mqtt.messages import Message

log = logging.getLogger("dovecote.mqtt")

CHUNK = 65536  # bytes a read: ~130 messages of 500 bytes a wake-up
READS = 64  # reads a wake-up at most, then other work gets its turn
# What paho is handed to close a connection that broke the protocol: a remaining length of
# five bytes, which its reader refuses, closing the socket and reporting the loss.
REFUSED = b"\x30\xff\xff\xff\xff\xff"


def no_delay(sock: Any) -> None:
    """Send each write at once (TCP_NODELAY). Writes are already one per loop turn
    (``BufferedSocket``), so this adds no small packets; without it, Nagle held a write
    back until the broker acknowledged the previous one, which a delayed ACK makes wait
    40 ms: a question and its answer on the bus (a page's inbox) took 88 ms, not 2
    (docs/performance.md)."""
    # Set on a duplicate of the descriptor, the same socket in the kernel: paho's websocket
    # wrapper has no public way to its real socket, but every socket-like has ``fileno``.
    with (
        contextlib.suppress(OSError, AttributeError, ValueError),
        socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_STREAM) as dup,
    ):
        dup.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class BufferedSocket:
    """paho's socket as paho sees it. It reads only the packets handed to it (``give``), and
    the stream's end (``end``); its writes (one ``send`` a packet) are kept, with our
    PUBACKs (``queue``), and sent together by ``flush``."""

    __slots__ = ("_error", "_given", "_out", "_pos", "ended", "raw")

    def __init__(self, sock: Any) -> None:
        self.raw = sock  # paho's socket (TCP, TLS or websocket)
        self._given = b""
        self._pos = 0
        self.ended = False
        self._error: OSError | None = None
        self._out = bytearray()

    def give(self, packet: bytes) -> None:
        self._given, self._pos = packet, 0

    def end(self, error: OSError | None) -> None:
        """The broker closed the stream (``error``: how it broke); paho reads that next."""
        self.ended, self._error = True, error

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._given):
            if self._error is not None:
                raise self._error
            if self.ended:
                return b""
            raise BlockingIOError  # paho: nothing more now
        chunk = self._given[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk

    def pending(self) -> int:
        """Bytes read off the socket and still held below us (TLS): no wake-up for them."""
        return int(self.raw.pending()) if hasattr(self.raw, "pending") else 0

    def queue(self, packet: bytes) -> None:
        self._out += packet

    def waiting(self) -> bool:
        """Bytes written and not yet sent."""
        return bool(self._out)

    def send(self, data: bytes | bytearray) -> int:
        self._out += data
        return len(data)

    def flush(self) -> bool:
        """Send what paho wrote; False if the kernel buffer is full (try again when writable)."""
        while self._out:
            try:
                sent = self.raw.send(self._out)
            except (BlockingIOError, ssl.SSLWantWriteError):
                return False
            del self._out[:sent]
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.flush()  # e.g. the DISCONNECT paho has just "sent"
        self.raw.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class LoopSocket:
    """Runs one paho client's I/O on the event loop, through the sockets it opens.

    ``closing()``: whether its connection is being stopped; a socket a connect opens then
    (the connect finished late, in its thread) is closed at once, never read.
    ``deliver(message)``: each PUBLISH of QoS 0 or 1, in order; ``undecodable(qos, mid)``:
    one whose topic is not UTF-8. ``auto_ack``: each acknowledged once ``deliver`` returned.
    """

    def __init__(
        self,
        client: paho.Client,
        closing: Callable[[], bool],
        deliver: Callable[[Message], None],
        undecodable: Callable[[int, int], None],
        auto_ack: bool = False,
    ) -> None:
        self._client = client
        self._closing = closing
        self._deliver = self._acked(deliver) if auto_ack else deliver
        self._undecodable = undecodable
        self._inbound: Inbound | None = None  # the watched socket's packet reader
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.buffered: BufferedSocket | None = None  # the socket watched now
        self._fd = -1
        self._writer_registered = False
        self._write_scheduled = False
        self._reading = False  # PUBACKs made meanwhile go out when the reading is done
        self._misc_handle: asyncio.TimerHandle | None = None
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._socket_want_write
        client.on_socket_unregister_write = self._socket_done_writing

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop to run on (``start``: the running one)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def close(self) -> None:
        """Stop watching; close the raw socket (nothing buffered is sent), if still open."""
        sock = self.buffered
        self.unwatch()
        if sock is not None:
            sock.raw.close()

    def start_misc(self) -> None:
        """Keepalive pings and ping timeouts from now (an accepted connection) on, once a
        second while a socket is open; paho notices a dead broker there."""
        assert self._loop is not None
        if self._misc_handle is not None:
            self._misc_handle.cancel()
        self._misc_handle = self._loop.call_later(1.0, self._misc)

    def stop_misc(self) -> None:
        if self._misc_handle is not None:
            self._misc_handle.cancel()
            self._misc_handle = None

    def unwatch(self) -> None:
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        if self._inbound is not None:
            self._inbound.open = False  # what is left of its last read is not delivered
        self._inbound = None
        self.buffered = None
        self._fd = -1
        self._writer_registered = False

    # --- paho's socket callbacks (some from the connect thread) -------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the loop; paho calls some callbacks from the connect thread."""
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _socket_open(self, client: paho.Client, _u: Any, sock: Any) -> None:
        no_delay(sock)
        # The one reach into paho's internals (paho 2 has no public way to wrap its socket):
        # it reads and writes through ``_sock``, so swapping in the buffered wrapper here
        # (before CONNECT is queued) batches its I/O.
        buffered = BufferedSocket(sock)
        client._sock = buffered
        self._call(self._watch, buffered)

    def _watch(self, sock: BufferedSocket) -> None:
        assert self._loop is not None
        if self._closing():
            sock.raw.close()  # a connect that finished after stop(): nobody will read it
            return
        self.buffered = sock
        self._inbound = Inbound(self._deliver, self._undecodable, self._to_paho, self._violation)
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._readable)

    def _socket_close(self, client: paho.Client, _u: Any, sock: Any) -> None:
        self._call(self._unwatch, sock)

    def _unwatch(self, sock: Any) -> None:
        if sock is self.buffered:
            self.unwatch()

    def _readable(self) -> None:
        sock, inbound = self.buffered, self._inbound
        if sock is None or inbound is None:
            return
        self._reading = True
        try:
            self._read(sock, inbound)
        finally:
            self._reading = False
        # The PUBACKs of the handlers that ran in the reading, in one send, now: not one
        # more loop iteration (a select) later. Whatever paho queued meanwhile is flushed
        # as before, and takes them along.
        idle = not (self._write_scheduled or self._writer_registered)
        if sock is self.buffered and idle and sock.waiting():
            self._send(sock)

    def _read(self, sock: BufferedSocket, inbound: Inbound) -> None:
        raw = sock.raw
        plain = type(raw) is socket.socket  # TLS and websockets: read until nothing is left
        for _ in range(READS):
            try:
                data = raw.recv(CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except OSError as exc:
                self._ended(sock, exc)
                return
            if not data:
                self._ended(sock, None)
                return
            # paho's keepalive counts from the last bytes it saw arrive; it no longer reads
            # them all, so it is told (the second reach into its internals, with ``_sock``).
            self._client._last_bytes_received = time.monotonic()
            inbound.feed(data)
            if not inbound.open or (plain and len(data) < CHUNK and not sock.pending()):
                return
        assert self._loop is not None
        self._loop.call_soon(self._readable)  # bounded: other work runs, then more reading

    def _to_paho(self, packet: bytes) -> bool:
        """paho reads and handles one whole packet; False if the connection closed on it."""
        sock = self.buffered
        if sock is None:
            return False
        sock.give(packet)
        self._client.loop_read()
        return self.buffered is sock

    def _ended(self, sock: BufferedSocket, error: OSError | None) -> None:
        """The broker closed the stream: paho reads the end, closes, reports the loss."""
        sock.end(error)
        self._client.loop_read()

    def _violation(self, reason: str) -> None:
        log.error("the broker broke MQTT 3.1.1 (%s): closing the connection", reason)
        self._to_paho(REFUSED)

    def _acked(self, deliver: Callable[[Message], None]) -> Callable[[Message], None]:
        def deliver_and_ack(msg: Message) -> None:
            try:
                deliver(msg)
            finally:  # as paho did with manual_ack=False
                if msg.qos == 1:
                    self.puback(msg.mid)

        return deliver_and_ack

    def puback(self, mid: int) -> None:
        """Acknowledge a QoS 1 message, with the others of this loop iteration in one write.
        Not connected: nothing to do; the broker sends the message again on the session."""
        sock = self.buffered
        if sock is not None:
            sock.queue(puback(mid))
            if not self._reading:
                self._schedule_write()

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
        if self.buffered is None:
            return
        self._client.loop_write()  # paho hands every queued packet to the buffer
        sock = self.buffered  # a DISCONNECT written just now closes it
        if sock is not None:
            self._send(sock)

    def _send(self, sock: BufferedSocket) -> None:
        try:
            done = sock.flush()
        except OSError:
            return  # the connection is gone: its reading sees the end, paho reports the loss
        assert self._loop is not None
        if not done and not self._writer_registered:
            self._loop.add_writer(self._fd, self._flush_writes)  # kernel buffer full
            self._writer_registered = True
        elif done and self._writer_registered:
            self._loop.remove_writer(self._fd)
            self._writer_registered = False

    def _socket_done_writing(self, client: paho.Client, _u: Any, sock: Any) -> None:
        pass  # writability is watched only while our own buffer cannot drain

    def _misc(self) -> None:
        if self.buffered is None:
            self._misc_handle = None
            return
        self._client.loop_misc()
        self.start_misc()
