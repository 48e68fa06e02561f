"""What an idle websocket costs without the gateway around it: ``python -m
bench.bare_socket_memory [N]`` (default 2,000).

The floor of each design, in this one process (the clients are ``bench.ws_load`` processes):
bytes of live Python allocations a socket (tracemalloc, started after 200 warm sockets,
read 2 s after N more), for a bare aiohttp app with one ``/ws`` route and no middleware:

- ``aiohttp``: ``WebSocketResponse(heartbeat=25)`` and ``async for msg in ws``, as the
  gateway had it;
- ``aiohttp, no heartbeat``: the same, ``heartbeat=None``;
- ``aiohttp, one future``: prepared, then the handler awaits a single future (no receive);
- ``handed over``: the gateway's way (``services/gateway/bus/upgrade.py``): the connection
  moves to a ``BrowserSocket`` and the handler returns.

And what one beat of the shared heartbeat costs (CPU) over 10,000 and 100,000 sockets.
"""

from __future__ import annotations

import asyncio
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable

from aiohttp import web

from dovecote.project import PROJECT
from services.gateway.bus import upgrade
from services.gateway.bus.browser_socket import BrowserSocket, Heartbeat

WARM = 200
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Nobody:
    """A listener that does nothing: the bare protocol's cost alone."""

    def text(self, text: str) -> None: ...
    def binary(self, data: bytes) -> None: ...
    def closed(self) -> None: ...


WAITING: list[asyncio.Future[None]] = []  # the one-future handlers', ended after a reading


def aiohttp_handler(heartbeat: float | None, one_future: bool = False) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, heartbeat=heartbeat, max_msg_size=16384)
        await ws.prepare(request)
        if one_future:
            waiting = asyncio.get_running_loop().create_future()
            WAITING.append(waiting)
            await waiting
        async for _ in ws:
            pass
        return ws

    return handler


def handed_over(kept: set[BrowserSocket]) -> Handler:
    heartbeat = Heartbeat()

    async def handler(request: web.Request) -> web.StreamResponse:
        accept = upgrade.accept_key(request)
        socket = BrowserSocket(heartbeat, Nobody())
        await upgrade.take_over(request, socket)
        if socket.transport is not None:
            socket.transport.write(upgrade.switching(accept))
            kept.add(socket)  # as the hub would
        return upgrade.Upgraded()

    return handler


async def fleet(url: str, n: int) -> asyncio.subprocess.Process:
    loader = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ws_load", url, str(n), cwd=PROJECT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert loader.stdout is not None
    if (await loader.stdout.readline()).strip() != b"ready":
        raise RuntimeError("a load process failed to connect")
    return loader


async def per_socket(handler: Handler, n: int) -> float:
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"ws://127.0.0.1:{port}/ws"
    loaders = [await fleet(url, WARM)]
    try:
        await asyncio.sleep(1.0)
        tracemalloc.start(1)
        before = tracemalloc.get_traced_memory()[0]
        loaders += [await fleet(url, n // 2), await fleet(url, n - n // 2)]
        await asyncio.sleep(2.0)
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
    finally:
        for waiting in WAITING:
            if not waiting.done():
                waiting.set_result(None)
        WAITING.clear()
        for loader in loaders:
            assert loader.stdin is not None
            loader.stdin.close()
            await loader.wait()
        await runner.cleanup()
    return (after - before) / n


def beat_ms(n: int) -> float:
    """CPU of one beat over ``n`` sockets all heard from lately (the usual case), median
    of 5."""
    heartbeat = Heartbeat()
    sockets = [BrowserSocket(heartbeat, Nobody()) for _ in range(n)]
    heartbeat.sockets.update(sockets)
    costs = []
    for _ in range(5):
        started = time.process_time()
        heartbeat._beat()
        costs.append(time.process_time() - started)
        for socket in sockets:
            socket.heard = heartbeat.beat
    if heartbeat.timer is not None:
        heartbeat.timer.cancel()
    return sorted(costs)[2] * 1000


async def main(n: int) -> None:
    kept: set[BrowserSocket] = set()
    designs = {
        "aiohttp": aiohttp_handler(25),
        "aiohttp, no heartbeat": aiohttp_handler(None),
        "aiohttp, one future": aiohttp_handler(25, one_future=True),
        "handed over": handed_over(kept),
    }
    print(f"bytes of live Python allocations a socket, {n:,} idle sockets, bare app")
    for name, handler in designs.items():
        print(f"  {name:24} {await per_socket(handler, n):8,.0f}")
    for count in (10_000, 100_000):
        print(f"one heartbeat beat over {count:,} sockets: {beat_ms(count):.2f} ms CPU")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
