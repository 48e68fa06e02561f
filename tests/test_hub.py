"""The hub's fan-out in process: shared frames written beside the socket's own, lagging sockets,
order.

The gateway's real web app runs in this test's event loop (no broker needed: the hub is
driven directly); clients are a real websockets client or a raw socket that stops reading.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets
from aiohttp import web
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from dovecote.tools.broker import free_port
from dovecote_testing.gateway import cookie_header, signed_in
from dovecote_testing.plugin import wait_until
from services.gateway.bus import hub as hub_module
from services.gateway.bus.frames import text_frame
from services.gateway.bus.hub import Hub
from services.gateway.bus.replay import key_of
from services.gateway.web.app import create_app
from tests.fixtures import gateway_context


def parse_frames(data: bytes) -> list[Frame]:
    """Frames as an independent implementation (the websockets library) reads them."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser: Generator[None, None, Frame] = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frames_parse_back_at_every_length_boundary(size: int) -> None:
    payload = b"x" * size
    [frame] = parse_frames(text_frame(payload))
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.data == payload


@dataclass
class Gateway:
    hub: Hub
    url: str

    async def as_person(self, person: str) -> dict[str, str]:
        """Headers of a socket from ``person``'s signed-in page."""
        page = self.url.replace("ws://", "http://").removesuffix("/ws")
        async with await signed_in(page, person) as http:
            return {"Cookie": cookie_header(http)}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    hub = Hub()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ctx = gateway_context(hub, base, tmp_path)
    runner = web.AppRunner(create_app(ctx), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield Gateway(hub, f"ws://127.0.0.1:{port}/ws")
    await runner.cleanup()  # the app closes its sockets, threads and accounts


def send(hub: Hub, n: int, pad: int = 0) -> None:
    """Broadcast bus message number ``n``, ``pad`` bytes bigger than it need be."""
    hub.broadcast("t/events/test", orjson.dumps({"n": n, "pad": "x" * pad}), f"urn:test:{n}")


GRACES = "t/users/grace/notifications"


def numbers(frames: list[Any]) -> list[int]:
    decoded = [orjson.loads(f) for f in frames]
    return [d["activity"]["n"] for d in decoded if d.get("topic") == "t/events/test"]


async def test_a_burst_arrives_whole_and_in_order_between_its_pings(gateway: Gateway) -> None:
    async with (
        websockets.connect(gateway.url, max_size=None) as a,
        websockets.connect(
            gateway.url, max_size=None, additional_headers=await gateway.as_person("grace")
        ) as b,
    ):
        await wait_until(lambda: len(gateway.hub.clients) == 2, 15, "two sockets")
        hello = orjson.loads(await a.recv())
        assert hello["type"] == "hello"
        await b.recv()
        for n in range(50):
            send(gateway.hub, n, pad=n * 1500)  # 0 .. 73 KB: every header size
            if n % 10 == 0:  # the socket writes its own frames between ours
                next(iter(gateway.hub.clients)).ws.ping(b"p")
            if n == 25:
                gateway.hub.send_to_user("grace", GRACES, orjson.dumps({"for": "grace"}), "urn:g")
        got_a = [await asyncio.wait_for(a.recv(), 5) for _ in range(50)]
        got_b = [await asyncio.wait_for(b.recv(), 5) for _ in range(51)]
    assert numbers(got_a) == list(range(50))
    assert numbers(got_b) == list(range(50))
    # Per-user frames keep their place among the broadcasts, numbered in the same sequence.
    key = key_of(GRACES, "urn:g")
    assert orjson.loads(got_b[26]) == {
        "seq": 27,
        "key": key,
        "topic": GRACES,
        "activity": {"for": "grace"},
    }
    assert [orjson.loads(f)["seq"] for f in got_a] == [*range(1, 27), *range(28, 52)]


def raw_socket(gateway: Gateway) -> socket.socket:
    """A websocket client that reads nothing unless told: a browser tab gone to sleep."""
    port = int(gateway.url.split(":")[2].split("/")[0])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" % port
    )
    return sock


async def test_a_lagging_socket_is_held_back_then_gets_everything_in_order(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "HIGH_WATER", 16 * 1024)
    with raw_socket(gateway) as slow:
        await lagging_then_reading(gateway, slow)


async def lagging_then_reading(gateway: Gateway, slow: socket.socket) -> None:
    await wait_until(lambda: len(gateway.hub.clients) == 1, 15, "the socket joined")
    [client] = gateway.hub.clients
    count = 0
    while client.backlog is None and count < 5000:  # fill the kernel and transport buffers
        send(gateway.hub, count, pad=8000)
        count += 1
        await asyncio.sleep(0)
    assert client.backlog is not None, "the socket never lagged"
    for n in range(count, count + 20):
        send(gateway.hub, n, pad=8000)
    count += 20
    gateway.hub.flush()
    assert client.held > 0 and client in gateway.hub.clients
    held, buffered = gateway.hub.queued_bytes()  # what the gateway's metrics report
    assert held == client.held and buffered > 0

    received = bytearray()
    slow.setblocking(False)
    loop = asyncio.get_running_loop()
    while True:  # read until the gateway has nothing more to send
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(slow, 1 << 16), 1)
        except TimeoutError:
            break
        if not chunk:
            break
        received += chunk
    assert received.startswith(b"HTTP/1.1 101")
    frames = parse_frames(bytes(received[received.find(b"\r\n\r\n") + 4 :]))
    assert numbers([f.data for f in frames if f.opcode is Opcode.TEXT]) == list(range(count))
    await wait_until(lambda: client.backlog is None, 15, "the backlog drained")


async def test_a_socket_that_never_reads_is_closed_and_forgotten(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "HIGH_WATER", 16 * 1024)
    monkeypatch.setattr(hub_module, "QUEUE_BYTES", 256 * 1024)
    with raw_socket(gateway) as stuck:
        await wait_until(lambda: len(gateway.hub.clients) == 1, 15, "the socket joined")
        for n in range(2000):
            send(gateway.hub, n, pad=8000)
            await asyncio.sleep(0)
            if not gateway.hub.clients:
                break
        assert not gateway.hub.clients and not gateway.hub.by_user
        assert gateway.hub.slow_closes == 1  # counted for the gateway's metrics report
        # Had it woken up now, it would read what its socket held, then the documented code.
        received = await read_to_the_end(stuck)
    frames = parse_frames(received[received.find(b"\r\n\r\n") + 4 :])
    assert frames[-1].opcode is Opcode.CLOSE
    assert int.from_bytes(frames[-1].data[:2], "big") == 1013 == hub_module.SLOW_CLOSE_CODE


async def read_to_the_end(sock: socket.socket) -> bytes:
    received = bytearray()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 5):
        received += chunk
    return bytes(received)


async def test_a_page_that_missed_more_than_a_socket_may_hold_reloads_instead(
    gateway: Gateway,
) -> None:
    send(gateway.hub, -1)  # a frame to resume after
    gateway.hub.flush()
    async with websockets.connect(gateway.url) as away:
        hello = orjson.loads(await away.recv())
    for n in range(150):  # 1.2 MB while it is away: more than QUEUE_BYTES
        send(gateway.hub, n, pad=8000)
    gateway.hub.flush()
    back = f"{gateway.url}?after="
    async with websockets.connect(back + ".".join(hello["after"])) as conn:
        first = orjson.loads(await conn.recv())
        assert first["type"] == "cannot-resume" and "KiB missed" in first["reason"]
        assert orjson.loads(await conn.recv())["resumed"] is False
    assert (gateway.hub.replays, gateway.hub.replays_refused) == (0, 1)
    # Had it seen up to number 140, the last nine would be its whole replay.
    seen = [key_of("t/events/test", f"urn:test:{n}") for n in range(117, 141)]
    async with websockets.connect(back + ".".join(seen)) as conn:
        assert orjson.loads(await conn.recv())["resumed"] is True
        got = [await asyncio.wait_for(conn.recv(), 5) for _ in range(9)]
        assert numbers(got) == list(range(141, 150))
    assert (gateway.hub.replays, gateway.hub.replays_refused) == (1, 1)
