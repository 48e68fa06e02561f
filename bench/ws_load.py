"""A websocket load process: N lean clients that time every stamped frame they receive.

``python -m bench.ws_load URL N [--engineio]``. The clients are bare asyncio protocols that
parse RFC 6455 frames themselves: a general-purpose client library costs the load process
several times more per frame than the servers under test spend, and on a small machine the
harness then measures itself (docs/performance.md). ``--engineio`` speaks the few Engine.IO
v4 / Socket.IO packets a socket.io server needs (open, namespace connect, ping/pong,
event), so the very same client code and clock time every server.

A stamped frame carries ``"summary":"STEP:NANOSECONDS"`` (the publisher's send time; same
machine, same clock). Lines on stdin drive it; replies go to stdout:

- (at start)  -> ``ready`` once all N sockets are open (and joined, for Engine.IO)
- ``step K``  -> count only frames stamped with step K from now on; replies ``ok``
- ``report``  -> one JSON line: frames counted, a latency histogram, sockets closed
- end of input -> exit
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from urllib.parse import urlsplit

import orjson

STAMP = b'"summary":"'
CONNECTS_AT_ONCE = 64  # a burst larger than the server's listen backlog only causes retries
HIST_FINE = 1000  # 0.1 ms buckets up to 100 ms ...
HIST_SIZE = HIST_FINE + 6000  # ... then 10 ms buckets up to 60 s


def bucket(latency_us: int) -> int:
    if latency_us < 100_000:
        return max(0, latency_us // 100)
    return min(HIST_SIZE - 1, HIST_FINE + (latency_us - 100_000) // 10_000)


def bucket_ms(index: int) -> float:
    """The latency a bucket stands for (its upper edge), in milliseconds."""
    if index < HIST_FINE:
        return (index + 1) / 10
    return 100 + (index - HIST_FINE + 1) * 10


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame, as a client must send (short payloads only: pongs and Engine.IO)."""
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


class Load:
    """The counters every client of this process shares."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.joined = 0
        self.closed = 0
        self.close_codes: dict[int, int] = {}
        self.step = -1
        self.frames = 0
        self.hist = [0] * HIST_SIZE
        self.all_joined = asyncio.Event()

    def join(self) -> None:
        self.joined += 1
        if self.joined == self.n:
            self.all_joined.set()

    def reset(self, step: int) -> None:
        self.step, self.frames, self.hist = step, 0, [0] * HIST_SIZE


class Client(asyncio.Protocol):
    __slots__ = ("buf", "engineio", "load", "request", "transport", "upgraded")

    def __init__(self, load: Load, request: bytes, engineio: bool) -> None:
        self.load = load
        self.request = request
        self.engineio = engineio
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.closed += 1

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if self.buf:
            data = self.buf + data
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            if not data.startswith((b"HTTP/1.1 101", b"HTTP/1.0 101")):
                sys.stderr.write(f"handshake refused: {data[:end].decode(errors='replace')}\n")
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded = True
            if not self.engineio:
                self.load.join()
            data = data[end + 4 :]
        pos, size = 0, len(data)
        while size - pos >= 2:
            length = data[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            opcode = data[pos] & 0x0F
            pos = end
            if opcode == 1:
                if self.engineio and data[start] != 0x34:  # not "4": an Engine.IO control
                    self._engineio(data[start:end])
                else:
                    self._stamp(data, start, end, now)
            elif opcode == 9:
                self._send(0xA, data[start:end])  # pong
            elif opcode == 8:
                code = int.from_bytes(data[start : start + 2], "big") if length >= 2 else 1005
                self.load.close_codes[code] = self.load.close_codes.get(code, 0) + 1
                self._send(0x8, data[start : start + 2])
                assert self.transport is not None
                self.transport.close()
                return
        self.buf = data[pos:] if pos < size else b""

    def _stamp(self, data: bytes, start: int, end: int, now: int) -> None:
        if self.engineio and data[start + 1] == 0x30:  # "40{...}": the namespace joined
            self.load.join()
            return
        i = data.find(STAMP, start, end)
        if i < 0:
            return
        i += len(STAMP)
        colon = data.find(b":", i, end)
        quote = data.find(b'"', colon, end)
        load = self.load
        if int(data[i:colon]) == load.step:
            load.frames += 1
            load.hist[bucket((now - int(data[colon + 1 : quote])) // 1000)] += 1

    def _engineio(self, packet: bytes) -> None:
        if packet[:1] == b"0":  # open: join the default namespace
            self._send(0x1, b"40")
        elif packet[:1] == b"2":  # ping: pong, or the server drops us
            self._send(0x1, b"3")

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(opcode, payload))


async def connect_all(url: str, load: Load, engineio: bool) -> list[asyncio.Transport]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    transports: list[asyncio.Transport] = []

    async def one() -> None:
        async with gate:
            for attempt in range(20):
                try:
                    transport, _ = await loop.create_connection(
                        lambda: Client(load, request, engineio), host, port
                    )
                except OSError:
                    await asyncio.sleep(0.05 * (attempt + 1))
                    continue
                assert isinstance(transport, asyncio.Transport)
                transports.append(transport)
                return
            raise RuntimeError(f"cannot connect to {host}:{port}")

    await asyncio.gather(*(one() for _ in range(load.n)))
    return transports


async def main(url: str, n: int, engineio: bool) -> None:
    load = Load(n)
    transports = await connect_all(url, load, engineio)
    await asyncio.wait_for(load.all_joined.wait(), 120)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = line.split()
        if command[0] == "step":
            load.reset(int(command[1]))
            out.write("ok\n")
        elif command[0] == "report":
            hist = {i: c for i, c in enumerate(load.hist) if c}
            report = {"frames": load.frames, "hist": hist, "closed": load.closed}
            line = orjson.dumps(
                {**report, "codes": load.close_codes}, option=orjson.OPT_NON_STR_KEYS
            )
            out.write(line.decode() + "\n")
        out.flush()
    for t in transports:
        t.abort()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(args[0], int(args[1]), "--engineio" in sys.argv))
