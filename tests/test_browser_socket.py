"""A page's websocket on the gateway's own protocol (services/gateway/bus/browser_socket.py):
frames from a raw TCP client, byte by byte as RFC 6455 has them, against the real app in the
test's loop (no broker: the hub is driven directly). Close codes, the 16 KiB limit, pings
both ways, the shared heartbeat, and that aiohttp keeps nothing of an open socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import orjson
import pytest

from dovecote_testing.plugin import wait_until
from services.gateway.bus import browser_socket
from tests.fixtures import InProcessGateway, in_process_gateway

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int, payload: bytes, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """A client's frame: masked unless told (RFC 6455 §5.2)."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    size = len(payload)
    bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 65536:
        head += bytes([bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawPage:
    """A websocket client that sends exactly the bytes a test gives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> RawPage:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: %b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % f"{host}:{port}".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head  # RFC's example
        page = cls(reader, writer)
        assert (await page.json())["type"] == "hello"
        return page

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def next(self, timeout: float = 5) -> tuple[int, bytes]:
        """The gateway's next frame (opcode, payload); never masked."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        assert not second & 0x80, "a server's frames are not masked"
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await self.reader.readexactly(size)

    async def json(self) -> dict[str, object]:
        opcode, payload = await self.next()
        assert opcode == TEXT
        found: dict[str, object] = orjson.loads(payload)
        return found

    async def closed_with(self) -> int:
        """The code of the close frame that comes next; the connection then ends."""
        opcode, payload = await self.next()
        assert opcode == CLOSE, (opcode, payload)
        assert await asyncio.wait_for(self.reader.read(), 5) == b""  # the gateway hung up
        return int.from_bytes(payload[:2], "big")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(tmp_path) as gateway:
        yield gateway


@pytest.fixture
async def pages() -> AsyncIterator[Callable[[str], Awaitable[RawPage]]]:
    """Opens raw pages, and closes them after the test, whatever happened."""
    opened: list[RawPage] = []

    async def open_page(url: str) -> RawPage:
        page = await RawPage.open(url)
        opened.append(page)
        return page

    yield open_page
    for page in opened:
        page.writer.close()
        with contextlib.suppress(ConnectionError):
            await page.writer.wait_closed()


async def test_a_command_in_fragments_is_answered_once_and_a_ping_gets_its_pong(
    served: InProcessGateway, pages: Callable[[str], Awaitable[RawPage]]
) -> None:
    page = await pages(served.url)
    body = orjson.dumps({"command": "build.start"})
    page.send(frame(TEXT, body[:5], fin=False) + frame(0x0, body[5:9], fin=False))
    page.send(frame(PING, b"between fragments"))  # a control frame may come in between
    page.send(frame(0x0, body[9:]))
    assert await page.next() == (PONG, b"between fragments")
    assert await page.json() == {"type": "error", "error": "sign in to send commands"}
    page.send(frame(BINARY, b"\x00\x01"))
    assert await page.json() == {"type": "error", "error": "binary frames are not accepted"}
    limit = browser_socket.MAX_MESSAGE
    page.send(frame(TEXT, b'"' + b"x" * (limit - 2) + b'"'))  # exactly the limit: read
    assert (await page.json())["type"] == "error"
    page.send(frame(CLOSE, b""))  # no code: answered with 1000
    assert await page.closed_with() == 1000
    await wait_until(lambda: not served.ctx.hub.clients, 5, "the hub forgot the socket")


BROKEN = {
    "unmasked": (frame(TEXT, b"{}", masked=False), 1002),
    "reserved bits": (frame(TEXT, b"{}", rsv=0x40), 1002),
    "unknown opcode": (frame(0x3, b"{}"), 1002),
    "fragmented ping": (frame(PING, b"p", fin=False), 1002),
    "control frame over 125 bytes": (frame(PING, b"p" * 126), 1002),
    "continuation first": (frame(0x0, b"{}"), 1002),
    "new message inside a fragmented one": (
        frame(TEXT, b"{", fin=False) + frame(TEXT, b"}"),
        1002,
    ),
    "close frame of one byte": (frame(CLOSE, b"\x03"), 1002),
    "close code never sent": (frame(CLOSE, (1005).to_bytes(2, "big")), 1002),
    "not UTF-8": (frame(TEXT, b'"\xff\xfe"'), 1007),
    "over 16 KiB, said by its header alone": (
        frame(TEXT, b"x" * (browser_socket.MAX_MESSAGE + 1))[:8],
        1009,
    ),
    "over 16 KiB in fragments": (
        frame(TEXT, b"x" * 10_000, fin=False) + frame(0x0, b"x" * 10_000),
        1009,
    ),
}


@pytest.mark.parametrize("sent", BROKEN.values(), ids=BROKEN.keys())
async def test_a_frame_the_protocol_forbids_closes_the_socket_with_its_code(
    served: InProcessGateway, sent: tuple[bytes, int], pages: Callable[[str], Awaitable[RawPage]]
) -> None:
    data, code = sent
    page = await pages(served.url)
    page.send(data)
    assert await page.closed_with() == code
    await wait_until(lambda: not served.ctx.hub.clients, 5, "the hub forgot the socket")


async def test_a_page_that_closes_gets_its_code_back_and_is_forgotten(
    served: InProcessGateway, pages: Callable[[str], Awaitable[RawPage]]
) -> None:
    page = await pages(served.url)
    other = await pages(served.url)
    # A frame cut anywhere still reads whole, and the close frame after it too.
    data = frame(PING, b"cut") + frame(CLOSE, (1001).to_bytes(2, "big") + b"tab closed")
    for i in range(len(data)):
        page.send(data[i : i + 1])
        await page.writer.drain()
    assert await page.next() == (PONG, b"cut")
    assert await page.closed_with() == 1001
    await wait_until(lambda: len(served.ctx.hub.clients) == 1, 5, "one socket left")
    served.ctx.hub.broadcast("t/events/test", b'{"n":1}', "urn:test:1")
    assert (await other.json())["activity"] == {"n": 1}


async def test_an_open_socket_is_ours_alone_no_task_or_request_of_aiohttp(
    served: InProcessGateway, pages: Callable[[str], Awaitable[RawPage]]
) -> None:
    before = len(asyncio.all_tasks())
    opened = [await pages(served.url) for _ in range(20)]
    assert len(served.ctx.hub.clients) == 20
    await asyncio.sleep(0.1)  # aiohttp's side of each connection has ended by now
    assert served.server.runner.server.connections == []
    assert len(asyncio.all_tasks()) <= before  # no task per socket
    served.ctx.hub.broadcast("t/events/test", b'{"n":2}', "urn:test:2")
    for page in opened:
        assert (await page.json())["activity"] == {"n": 2}


@pytest.fixture
async def quick_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[InProcessGateway]:
    """The gateway with a heartbeat of 1 s: a ping after 1 s of silence, dropped 0.5 s
    after an unanswered one (25 s and 12.5 s in production, the same code)."""
    monkeypatch.setattr(browser_socket, "HEARTBEAT_S", 1.0)
    async with in_process_gateway(tmp_path) as gateway:
        yield gateway


async def test_a_silent_socket_is_pinged_then_dropped_when_it_does_not_answer(
    quick_heartbeat: InProcessGateway, pages: Callable[[str], Awaitable[RawPage]]
) -> None:
    opened = time.monotonic()
    page = await pages(quick_heartbeat.url)
    assert await page.next() == (PING, b"")
    pinged = time.monotonic() - opened
    assert 1.0 <= pinged < 1.1 + 1.0  # an interval, a beat (0.1 s), and a busy machine's slack
    assert await asyncio.wait_for(page.reader.read(), 5) == b""  # no close frame: 1006
    dropped = time.monotonic() - opened - pinged
    assert 0.4 <= dropped < 0.5 + 0.1 + 1.0
    await wait_until(lambda: not quick_heartbeat.ctx.hub.clients, 5, "the hub forgot it")


async def test_a_socket_that_answers_its_pings_stays_open(
    quick_heartbeat: InProcessGateway, pages: Callable[[str], Awaitable[RawPage]]
) -> None:
    page = await pages(quick_heartbeat.url)
    pings = 0
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        opcode, payload = await page.next()
        assert opcode == PING
        pings += 1
        page.send(frame(PONG, payload))
    assert pings >= 3 and len(quick_heartbeat.ctx.hub.clients) == 1
    quick_heartbeat.ctx.hub.broadcast("t/events/test", b'{"n":3}', "urn:test:3")
    assert (await page.json())["activity"] == {"n": 3}
