"""A browser's websocket once upgraded: our own asyncio protocol on its connection.

aiohttp answers the upgrade request; then the connection is handed to this protocol
(``upgrade.py``) and aiohttp forgets it. What a socket costs from then on is its transport
and this one object, no request, task or coroutine (docs/performance.md: from 15.8 KB of
RSS a socket under aiohttp's ``WebSocketResponse`` to the figure there).

The server's side of RFC 6455, for the gateway's needs:

- the page's messages (text or binary, fragmented or not, at most ``MAX_MESSAGE`` bytes) go
  to the socket's ``listener``; a ping is answered with a pong, a close frame with a close
  frame, after which the connection ends;
- a frame the RFC forbids (unmasked, reserved bits, an unknown opcode, a control frame that
  is fragmented or over 125 bytes, a continuation out of place, a bad close frame) closes
  the socket with 1002; a text message that is not UTF-8 with 1007; a message over
  ``MAX_MESSAGE`` with 1009, as soon as its header says so (its payload is not read);
- ``close`` sends a close frame and waits for the browser's, ``CLOSE_TIMEOUT`` at most;
- ``Heartbeat``: one timer for every socket, instead of one per socket.

Frames are written whole, in one ``transport.write`` each, like the hub's (``hub.py``), so
a pong or a close frame never lands inside one of the hub's frames.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from services.gateway.bus.frames import close_frame, control_frame

MAX_MESSAGE = 16 * 1024  # bytes of a message from a page, fragments together
CLOSE_TIMEOUT = 10.0  # seconds a browser has to answer our close frame
HEARTBEAT_S = 25.0  # a socket silent this long gets a ping; silent half as long again: dropped
BEATS = 10  # the heartbeat's timer runs BEATS times an interval (every 2.5 s)

OPEN, CLOSING, CLOSED = 0, 1, 2
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
PROTOCOL_ERROR, INVALID_TEXT, TOO_BIG = 1002, 1007, 1009
# Codes a close frame may carry (RFC 6455 §7.4; 1012-1014 registered since).
CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)})


class Listener(Protocol):
    def text(self, text: str) -> None: ...
    def binary(self, data: bytes) -> None: ...
    def closed(self) -> None: ...


def unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR with the 4-byte key a client masks every frame with (RFC 6455 §5.3)."""
    size = len(payload)
    if not size:
        return b""
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")


class BrowserSocket(asyncio.Protocol):
    """One browser's websocket, from its 101 on. ``closed``: no frame may be sent to it
    (we sent or got a close frame, or the connection is gone)."""

    __slots__ = (
        "buffer",
        "done",
        "give_up",
        "heard",
        "heartbeat",
        "listener",
        "message",
        "message_kind",
        "pinged",
        "state",
        "transport",
    )

    def __init__(self, heartbeat: Heartbeat, listener: Listener) -> None:
        self.heartbeat = heartbeat
        self.listener: Listener | None = listener
        self.transport: asyncio.Transport | None = None
        self.state = OPEN
        self.heard = heartbeat.beat  # the heartbeat's beat when it last sent us anything
        self.pinged = 0  # the beat our outstanding ping was sent at; 0: none
        self.buffer: bytearray | None = None  # a frame not yet whole
        self.message: bytearray | None = None  # the fragments of a message so far
        self.message_kind = TEXT
        self.done: asyncio.Future[None] | None = None  # made only when ``close`` waits
        self.give_up: asyncio.TimerHandle | None = None  # only while closing

    @property
    def closed(self) -> bool:
        return self.state != OPEN

    # --- asyncio's side ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.heartbeat.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.heartbeat.discard(self)
        if self.give_up is not None:
            self.give_up.cancel()
            self.give_up = None
        if self.done is not None and not self.done.done():
            self.done.set_result(None)
        listener, self.listener = self.listener, None
        self.buffer = self.message = None
        if listener is not None:
            listener.closed()

    def data_received(self, data: bytes) -> None:
        self.heard = self.heartbeat.beat  # anything at all: the browser is there
        buffer = self.buffer
        if buffer is not None:  # appended to, not copied: a frame may come a byte at a time
            buffer += data
        used = self._frames(data if buffer is None else buffer)
        if self.state == CLOSED:
            self.buffer = None
        elif buffer is not None:
            del buffer[:used]
            if not buffer:
                self.buffer = None
        elif used < len(data):  # at most a header and MAX_MESSAGE bytes (``_refused``)
            self.buffer = bytearray(data[used:])

    # --- sending ----------------------------------------------------------------------------

    def ping(self, payload: bytes = b"") -> None:
        if self.state == OPEN and self.transport is not None:
            self.transport.write(control_frame(PING, payload))

    def send_close(self, code: int, reason: bytes = b"") -> None:
        """Start the closing handshake: our close frame, then the browser's (``give_up``
        ends the connection if it never comes)."""
        transport = self.transport
        if self.state != OPEN or transport is None:
            return
        self.state = CLOSING
        transport.write(close_frame(code, reason))
        self.give_up = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)

    async def close(self, *, code: int = 1000, message: bytes = b"") -> None:
        """Close with ``code`` and wait until the connection has ended; cancelled, it ends
        the connection at once."""
        self.send_close(code, message)
        if self.state == CLOSED or self.transport is None:
            return
        if self.done is None:
            self.done = asyncio.get_running_loop().create_future()
        try:
            await asyncio.shield(self.done)
        except asyncio.CancelledError:
            if self.transport is not None:
                self.transport.abort()
            raise

    def _fail(self, code: int, reason: str) -> None:
        """A browser that broke the protocol: our close frame, and the connection ends."""
        if self.state == OPEN and self.transport is not None:
            self.transport.write(close_frame(code, reason.encode()))
        self._end()

    def _end(self) -> None:
        """End the connection once what was written is sent (``CLOSE_TIMEOUT`` at most)."""
        self.state = CLOSED
        transport = self.transport
        if transport is None:
            return
        transport.close()
        if self.give_up is None:
            self.give_up = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)

    # --- reading ----------------------------------------------------------------------------

    def _frames(self, data: bytes | bytearray) -> int:
        """Act on every whole frame in ``data``; how many bytes were used."""
        pos, end = 0, len(data)
        while end - pos >= 2 and self.state != CLOSED:
            first, second = data[pos], data[pos + 1]
            length, head = second & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            refused = self._refused(first, second, length)
            if refused is not None:
                self._fail(*refused)
                break
            start = pos + head + 4
            if end < start + length:
                break
            mask = data[start - 4 : start]
            payload = unmask(data[start : start + length], mask)
            pos = start + length
            self._frame(first & 0x0F, bool(first & 0x80), payload)
        return pos

    def _refused(self, first: int, second: int, length: int) -> tuple[int, str] | None:
        """Why a frame with this header may not be read (code, reason), or None."""
        opcode, fin = first & 0x0F, first & 0x80
        if first & 0x70:
            return PROTOCOL_ERROR, "reserved bits set (no extension was agreed)"
        if not second & 0x80:
            return PROTOCOL_ERROR, "a client's frames must be masked"
        if opcode >= CLOSE:
            if opcode not in (CLOSE, PING, PONG):
                return PROTOCOL_ERROR, f"unknown opcode {opcode}"
            if not fin or length > 125:
                return PROTOCOL_ERROR, "a control frame is whole and at most 125 bytes"
            return None
        if opcode not in (CONTINUATION, TEXT, BINARY):
            return PROTOCOL_ERROR, f"unknown opcode {opcode}"
        if (opcode == CONTINUATION) != (self.message is not None):
            return PROTOCOL_ERROR, "a continuation frame out of place"
        so_far = len(self.message) if self.message is not None else 0
        if so_far + length > MAX_MESSAGE:
            return TOO_BIG, f"a message is at most {MAX_MESSAGE} bytes"
        return None

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode == CLOSE:
            self._closing(payload)
        elif opcode == PING:
            if self.state == OPEN and self.transport is not None:
                self.transport.write(control_frame(PONG, payload))
        elif opcode == PONG:
            pass  # data_received noted that it is alive
        elif self.state != OPEN:
            pass  # we said close: what it sent meanwhile goes unread
        elif not fin:
            if self.message is None:
                self.message, self.message_kind = bytearray(payload), opcode
            else:
                self.message += payload
        else:
            if self.message is not None:
                payload, opcode = bytes(self.message + payload), self.message_kind
                self.message = None
            self._deliver(opcode, payload)

    def _deliver(self, opcode: int, payload: bytes) -> None:
        listener = self.listener
        if listener is None:
            return
        if opcode == BINARY:
            listener.binary(payload)
            return
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            self._fail(INVALID_TEXT, "a text message must be UTF-8")
            return
        listener.text(text)

    def _closing(self, payload: bytes) -> None:
        """The browser's close frame: answer it (unless it answers ours), then end."""
        code = 1000
        if len(payload) >= 2:
            code = int.from_bytes(payload[:2], "big")
            try:
                payload[2:].decode()
            except UnicodeDecodeError:
                self._fail(INVALID_TEXT, "a close reason must be UTF-8")
                return
        if len(payload) == 1 or code not in CLOSE_CODES:
            self._fail(PROTOCOL_ERROR, "a bad close frame")
            return
        if self.state == OPEN and self.transport is not None:
            self.transport.write(close_frame(code))
        self._end()  # the server ends the TCP connection first (RFC 6455 §7.1.1)


class Heartbeat:
    """Pings for every socket from one timer: every ``interval / BEATS`` seconds it looks
    at the open sockets; one silent for ``interval`` (not a byte received) gets a ping, and
    one still silent ``interval / 2`` after its ping is dropped (the browser sees 1006).
    So a ping goes out after 25 to 27.5 s of silence, and a socket is dropped 12.5 s after
    an unanswered ping. The timer runs only while a socket is open."""

    __slots__ = ("beat", "every", "sockets", "timer")

    def __init__(self, interval: float | None = None) -> None:
        self.every = (HEARTBEAT_S if interval is None else interval) / BEATS
        self.beat = 1  # beats so far (from 1: a ping's beat is never 0, "none")
        self.sockets: set[BrowserSocket] = set()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, socket: BrowserSocket) -> None:
        self.sockets.add(socket)
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.every, self._beat)

    def discard(self, socket: BrowserSocket) -> None:
        self.sockets.discard(socket)

    def _beat(self) -> None:
        self.beat += 1
        beat = self.beat
        quiet = beat - BEATS - 1  # heard at this beat or before: silent for an interval
        late = beat - BEATS // 2  # pinged at this beat or before: half an interval ago
        dead = []
        for socket in self.sockets:
            heard = socket.heard
            if heard > quiet:
                continue
            if socket.pinged <= heard:  # no ping, or one it answered
                socket.pinged = beat
                socket.ping()
            elif socket.pinged <= late:
                dead.append(socket)
        for socket in dead:
            if socket.transport is not None:
                socket.transport.abort()
        self.timer = None
        if self.sockets:
            self.timer = asyncio.get_running_loop().call_later(self.every, self._beat)
