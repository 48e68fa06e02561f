"""The gateway's app owns its context: sockets, threads and accounts store close with it
(``services/gateway/web/lifecycle.py``, aiohttp's ``on_shutdown`` and ``cleanup_ctx``), and a
background task runs while the app does. No broker: the app in the test's own loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from services.gateway.web import lifecycle
from tests.fixtures import in_process_gateway


async def test_the_app_closes_its_sockets_threads_and_accounts_with_it(tmp_path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        async with in_process_gateway(tmp_path) as served:
            ctx = served.ctx
            ws = await http.ws_connect(f"{served.url}/ws", headers={"Origin": served.url})
            assert (await ws.receive_json())["type"] == "hello"
            assert len(ctx.hub.clients) == 1 and ctx.people.get("ada") is not None
            closing = time.monotonic()
        # Not the server's shutdown timeout (60 s): the socket was closed before it waited.
        assert time.monotonic() - closing < 5
        last = await asyncio.wait_for(ws.receive(), 5)
        assert last.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)
    assert not ctx.hub.clients
    with pytest.raises(AssertionError, match=r"open\(\) first"):
        ctx.people.get("ada")
    with pytest.raises(RuntimeError, match="shutdown"):
        ctx.hashing.submit(int)


async def test_a_background_task_runs_while_the_app_does() -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    app = web.Application()
    app.cleanup_ctx.append(lifecycle.background("test-work", work))
    runner = web.AppRunner(app)
    await runner.setup()
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.05)
    assert not stopped.is_set()
    await runner.cleanup()
    assert stopped.is_set()
