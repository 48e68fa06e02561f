"""One herd load process: N websockets to one gateway, each timing the 1/s tick it receives.

``python -m bench.herd_client URL N FIRST RATE``: sockets FIRST .. FIRST+N-1 of the herd,
opened at RATE a second. It is a bare ``epoll`` loop on non-blocking sockets, no asyncio: at
100,000 sockets and one tick a second each, the load processes read 100,000 frames a second
beside the gateway on the same two cores, so what a read costs here decides whether the
bench measures the gateway or itself. Every socket gets the same bytes for one tick (the hub
frames a message once), so a read is looked up whole in a small cache of reads already
parsed; only the others (the handshake, hello, pings, a read cut mid-frame) are parsed.

Each socket is bound to its own loopback source address (127.1.0.1 upwards, ``PER_ADDRESS``
sockets on each) before it connects: one source address has only the ephemeral port range
(~28,000 ports) towards one server port. A tick is an activity whose ``summary`` is
``"K:NANOSECONDS"`` (tick K, its publish time); the frame around it is not parsed, so a new
envelope field changes nothing here. Tick 0 warms up and is not counted.

Replies on stdout: ``opened K FAILED`` once every socket is open or has given up; then to a
``count`` line from stdin the ticks received so far, to ``report`` one JSON line (counts,
latency histogram, reasons); it exits at the end of stdin (its sockets reset, not closed).
"""

from __future__ import annotations

import base64
import errno
import os
import select
import socket
import struct
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import orjson

from bench.ws_load import HIST_SIZE, bucket, client_frame

PER_ADDRESS = 100  # sockets on one source address (each address has ~28,000 ports)
IN_FLIGHT = 32  # handshakes under way at once, per process (the listen backlog is 128)
TRIES = 3  # connection attempts a socket gets before it counts as failed
HANDSHAKE_TIMEOUT = 30.0  # seconds from connect to 101
IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h: the port is picked at connect, per destination
STAMP = b'"summary":"'
# A round of epoll that found only a few sockets ready waits this long before reading them:
# the gateway writes a tick socket after socket, and reading each as it comes costs a
# wake-up per frame (2 frames a round measured, 11 µs of CPU a frame). The wait is counted
# in the latency measured (a frame is stamped when read), so it can only make it look worse.
BATCH, BATCH_WAIT = 64, 0.002
LINGER_RESET = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT left behind
CONNECTING, UPGRADING, OPEN = 0, 1, 2
# The kernel stamps what a socket receives (asm-generic/socket.h; not in Python's socket
# module): the time a frame reached the socket, i.e. when the gateway wrote it (loopback),
# apart from when this process got round to reading it.
SO_TIMESTAMPNS = 35
ANCILLARY = socket.CMSG_SPACE(16)  # one struct timespec
TIMESPEC = struct.Struct("qq")
KEY = base64.b64encode(os.urandom(16)).decode()  # one for all: the answer is not checked


def source_address(index: int) -> str:
    """The loopback address socket ``index`` of the herd connects from (127.1.0.1 on)."""
    a = index // PER_ADDRESS
    return f"127.{1 + a // 64516}.{a // 254 % 254 + 1}.{a % 254 + 1}"


def stamps(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(tick, publish time in ns) of a text frame's payload, or None if it is no tick."""
    i = data.find(STAMP, start, end)
    if i < 0:
        return None
    i += len(STAMP)
    colon = data.find(b":", i, end)
    quote = data.find(b'"', colon, end)
    try:
        return int(data[i:colon]), int(data[colon + 1 : quote])
    except ValueError:
        return None


def arrival(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The kernel's receive time of a read (ns), or 0 when it gave none."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            seconds, nanoseconds = TIMESPEC.unpack(data)
            return int(seconds) * 1_000_000_000 + int(nanoseconds)
    return 0


class Conn:
    __slots__ = ("buf", "fd", "index", "last", "sock", "started", "state", "ticks", "tries")

    def __init__(self, sock: socket.socket, index: int, tries: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.index = index
        self.tries = tries
        self.state = CONNECTING
        self.started = time.monotonic()
        self.buf = b""
        self.ticks = 0  # ticks >= 1 received
        self.last = 0  # the newest tick received


class Herd:
    def __init__(self, url: str, n: int, first: int, rate: float) -> None:
        parts = urlsplit(url)
        self.server = (parts.hostname or "127.0.0.1", parts.port or 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"{self.server[0]}:{self.server[1]}"
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.n, self.first, self.rate = n, first, rate
        self.epoll = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.pending: list[tuple[int, int]] = []  # (index, tries) waiting to connect again
        self.next = 0  # sockets started so far (first tries)
        self.upgrading: dict[int, Conn] = {}  # connecting or waiting for 101
        self.opened = 0
        self.failed: Counter[str] = Counter()  # reasons, after the last try
        self.retried: Counter[str] = Counter()  # reasons of a try that was retried
        self.dropped: Counter[str] = Counter()  # reasons an open socket ended
        self.handshake_ms: list[float] = []
        self.hist = [0] * HIST_SIZE  # publish -> read by this process
        self.arrived = [0] * HIST_SIZE  # publish -> in the socket (the kernel's stamp)
        self.frames = 0
        self.unstamped = 0  # ticks read with no kernel stamp (counted as arrived when read)
        self.spans: dict[int, list[int]] = {}  # tick -> first and last arrival (ns after publish)
        self.duplicates = 0  # a tick a socket already had
        self.cache: dict[bytes, tuple[tuple[int, int], ...]] = {}
        self.opened_at: float | None = None
        self.line = b""  # from stdin, up to its newline

    # -- opening -----------------------------------------------------------------------

    def start(self, index: int, tries: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            sock.bind((source_address(self.first + index), 0))
            code = sock.connect_ex(self.server)
        except OSError as exc:
            code = exc.errno or errno.EIO
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.give_up(index, tries + 1, os.strerror(code))
            return
        conn = Conn(sock, index, tries + 1)
        self.conns[conn.fd] = self.upgrading[conn.fd] = conn
        self.epoll.register(conn.fd, select.EPOLLOUT)

    def give_up(self, index: int, tries: int, reason: str) -> None:
        """One try failed: again later, or counted as failed after the last."""
        if tries < TRIES:
            self.retried[reason] += 1
            self.pending.append((index, tries))
        else:
            self.failed[reason] += 1

    def fail(self, conn: Conn, reason: str) -> None:
        self.forget(conn)
        self.give_up(conn.index, conn.tries, reason)

    def forget(self, conn: Conn) -> None:
        del self.conns[conn.fd]
        self.upgrading.pop(conn.fd, None)
        self.epoll.unregister(conn.fd)
        conn.sock.close()

    def writable(self, conn: Conn) -> None:
        code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.fail(conn, os.strerror(code))
            return
        conn.sock.send(self.request)
        conn.state = UPGRADING
        self.epoll.modify(conn.fd, select.EPOLLIN)

    def upgrade(self, conn: Conn, data: bytes) -> None:
        data = conn.buf + data
        end = data.find(b"\r\n\r\n")
        if end < 0:
            conn.buf = data
            return
        if not data.startswith(b"HTTP/1.1 101"):
            self.fail(conn, "refused: " + data[: data.find(b"\r\n")].decode(errors="replace"))
            return
        conn.state, conn.buf = OPEN, b""
        del self.upgrading[conn.fd]
        self.opened += 1
        self.handshake_ms.append((time.monotonic() - conn.started) * 1000)
        if data[end + 4 :]:
            self.frames_of(conn, data[end + 4 :], time.time_ns(), 0)

    def open_more(self, began: float) -> None:
        due = min(self.n, int((time.monotonic() - began) * self.rate) + 1)
        while len(self.upgrading) < IN_FLIGHT and (self.pending or self.next < due):
            if self.pending:
                self.start(*self.pending.pop())
            else:
                self.start(self.next, 0)
                self.next += 1

    def timed_out(self) -> None:
        limit = time.monotonic() - HANDSHAKE_TIMEOUT
        for conn in [c for c in self.upgrading.values() if c.started < limit]:
            self.fail(conn, "no 101 within 30 s")

    # -- reading ------------------------------------------------------------------------

    def readable(self, conn: Conn) -> None:
        try:
            data, ancillary, _, _ = conn.sock.recvmsg(65536, ANCILLARY)
        except BlockingIOError:
            return
        except OSError as exc:
            self.ended(conn, os.strerror(exc.errno or errno.EIO))
            return
        now = time.time_ns()
        if not data:
            self.ended(conn, "closed by the server (no close frame)")
        elif conn.state == OPEN:
            arrived = arrival(ancillary)
            known = None if conn.buf else self.cache.get(data)
            if known is None:
                self.frames_of(conn, data, now, arrived)
            else:
                self.count(conn, known, now, arrived)
        else:
            self.upgrade(conn, data)

    def ended(self, conn: Conn, reason: str) -> None:
        if conn.state == OPEN:
            self.dropped[reason] += 1
            self.forget(conn)
        else:
            self.fail(conn, reason)

    def count(self, conn: Conn, ticks: tuple[tuple[int, int], ...], now: int, arrived: int) -> None:
        for tick, sent in ticks:  # tick 0 (the warm-up) is never past last (0): not counted
            if tick > conn.last:
                conn.last = tick
                conn.ticks += 1
                self.frames += 1
                self.hist[bucket((now - sent) // 1000)] += 1
                if not arrived:
                    self.unstamped += 1
                    arrived = now
                self.arrived[bucket((arrived - sent) // 1000)] += 1
                span = self.spans.get(tick)
                if span is None:
                    self.spans[tick] = [arrived - sent, arrived - sent]
                elif arrived - sent > span[1]:
                    span[1] = arrived - sent
                elif arrived - sent < span[0]:
                    span[0] = arrived - sent
            elif tick:
                self.duplicates += 1

    def frames_of(self, conn: Conn, data: bytes, now: int, arrived: int) -> None:
        """Parse whole frames; a read made of text frames only goes in the cache."""
        fresh = not conn.buf
        if conn.buf:
            data = conn.buf + data
        pos, size, found, plain = 0, len(data), [], True
        while size - pos >= 2:
            length, start = data[pos + 1] & 0x7F, pos + 2
            if length == 126:
                length, start = int.from_bytes(data[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                length, start = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 10
            if start + length > size:
                break
            opcode, end, pos = data[pos] & 0x0F, start + length, start + length
            if opcode == 1:
                stamp = stamps(data, start, end)
                if stamp is not None:
                    found.append(stamp)
                continue
            plain = False
            if opcode == 9:
                conn.sock.send(client_frame(0xA, data[start:end]))  # pong, or be dropped
            elif opcode == 8:
                code = int.from_bytes(data[start : start + 2], "big") if length >= 2 else 1005
                self.dropped[f"close frame {code} {data[start + 2 : end]!r}"] += 1
                self.forget(conn)
                return
        conn.buf = data[pos:]
        ticks = tuple(found)
        if fresh and plain and pos == size and ticks:
            if len(self.cache) > 64:
                self.cache.clear()
            self.cache[data] = ticks
        self.count(conn, ticks, now, arrived)

    # -- the loop -----------------------------------------------------------------------

    def report(self) -> bytes:
        per_socket = Counter(c.ticks for c in self.conns.values() if c.state == OPEN)
        return orjson.dumps(
            {
                "opened": self.opened,
                "open": sum(per_socket.values()),
                "failed": self.failed,
                "retried": self.retried,
                "dropped": self.dropped,
                "frames": self.frames,
                "duplicates": self.duplicates,
                "unstamped": self.unstamped,
                "spans": self.spans,
                "ticks_per_socket": per_socket,
                "hist": {i: c for i, c in enumerate(self.hist) if c},
                "arrived": {i: c for i, c in enumerate(self.arrived) if c},
                "handshake_ms": sorted(self.handshake_ms),
            },
            option=orjson.OPT_NON_STR_KEYS,
        )

    def run(self) -> None:
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)
        self.epoll.register(stdin, select.EPOLLIN)
        began = time.monotonic()
        while self.opened_at is None:
            self.open_more(began)
            self.timed_out()
            if self.opened + sum(self.failed.values()) == self.n:
                self.opened_at = time.monotonic()
                self.say(f"opened {self.opened} {sum(self.failed.values())}")
            for fd, _ in self.epoll.poll(0.005, 4096):
                conn = self.conns.get(fd)
                if conn is None:
                    if not self.command(fd):
                        return
                elif conn.state == CONNECTING:
                    self.writable(conn)
                else:
                    self.readable(conn)
        while self.pump():
            pass

    def pump(self) -> bool:
        """One epoll round with every socket open. False once stdin has ended."""
        get, known_reads, clock = self.conns.get, self.cache.get, time.time_ns
        events = self.epoll.poll(1.0, 4096)
        if 0 < len(events) < BATCH:
            time.sleep(BATCH_WAIT)
        for fd, _ in events:
            conn = get(fd)
            if conn is None:
                if not self.command(fd):
                    return False
                continue
            if conn.buf or conn.state != OPEN:
                self.readable(conn)
                continue
            try:  # the common case, in place: a whole read the cache knows
                data, ancillary, _, _ = conn.sock.recvmsg(65536, ANCILLARY)
            except BlockingIOError:
                continue
            except OSError as exc:
                self.ended(conn, os.strerror(exc.errno or errno.EIO))
                continue
            now = clock()
            known = known_reads(data)
            if known is not None:
                self.count(conn, known, now, arrival(ancillary))
            elif data:
                self.frames_of(conn, data, now, arrival(ancillary))
            else:
                self.ended(conn, "closed by the server (no close frame)")
        return True

    def command(self, fd: int) -> bool:
        """A line from the bench on stdin (``report``); False at its end."""
        chunk = os.read(fd, 4096)
        if not chunk:
            return False
        self.line += chunk
        while b"\n" in self.line:
            command, self.line = self.line.split(b"\n", 1)
            if command.strip() == b"report":
                self.say(self.report().decode())
            elif command.strip() == b"count":
                self.say(str(self.frames))
        return True

    def say(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def reset_all(self) -> None:
        for conn in self.conns.values():
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            conn.sock.close()


def main(argv: list[str]) -> None:
    url, n, first, rate = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    herd = Herd(url, n, first, rate)
    try:
        herd.run()
    finally:
        herd.reset_all()


if __name__ == "__main__":
    main(sys.argv[1:])
