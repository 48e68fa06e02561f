"""paho's socket on the asyncio event loop: no thread, no queue hop, batched I/O.

paho does the protocol; asyncio does the waiting. The socket is watched with
``loop.add_reader`` and paho's ``loop_read`` runs right there, so an incoming message is
handed to ``on_message`` synchronously, with no thread and no queue hop
(docs/performance.md: an extra hop per message halves paho's rate). Writes are batched:
paho asks for a write, we flush once at the end of the current loop iteration, and watch
for writability only when the kernel's buffer is full. ``loop_misc`` (keepalive pings, a
dead broker noticed) runs once a second while an accepted connection's socket is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho


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
    """paho reads a packet with 3-4 ``recv`` calls and writes each packet with its own
    ``send``. Under paho, this turns a loop iteration's reads into one ``recv`` of up to 64 KiB
    and its writes (e.g. a batch of PUBACKs) into one ``send``.
    """

    __slots__ = ("_buf", "_out", "_pos", "raw")

    def __init__(self, sock: Any) -> None:
        self.raw = sock  # paho's socket (TCP, TLS or websocket)
        self._buf = b""
        self._pos = 0
        self._out = bytearray()

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            self._buf = self.raw.recv(65536)  # BlockingIOError propagates: paho expects it
            self._pos = 0
            if not self._buf:
                return b""
        chunk = self._buf[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def pending(self) -> int:
        inner = self.raw.pending() if hasattr(self.raw, "pending") else 0
        return self.buffered() + int(inner)

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
    """

    def __init__(self, client: paho.Client, closing: Callable[[], bool]) -> None:
        self._client = client
        self._closing = closing
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.buffered: BufferedSocket | None = None  # the socket watched now
        self._fd = -1
        self._writer_registered = False
        self._write_scheduled = False
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
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._readable)

    def _socket_close(self, client: paho.Client, _u: Any, sock: Any) -> None:
        self._call(self._unwatch, sock)

    def _unwatch(self, sock: Any) -> None:
        if sock is self.buffered:
            self.unwatch()

    def _readable(self) -> None:
        read = self._client.loop_read
        read()
        # Everything already buffered is handled in this same loop iteration, so acks and
        # publishes it causes go out in one write. Bounded, to let other work run.
        for _ in range(2000):
            sock = self.buffered
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
        if self.buffered is None:
            return
        self._client.loop_write()  # paho hands every queued packet to the buffer
        sock = self.buffered  # a DISCONNECT written just now closes it
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

    def _misc(self) -> None:
        if self.buffered is None:
            self._misc_handle = None
            return
        self._client.loop_misc()
        self.start_misc()
