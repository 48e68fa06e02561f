"""A malformed request costs the gateway one warning line, not a traceback (found by the fuzz)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from dovecote.tools.broker import free_port
from services.gateway.web.badrequests import SERVER_LOGGER, quiet_client_faults


async def explode(_: web.Request) -> web.Response:
    raise RuntimeError("a real bug")


@pytest.fixture
async def port() -> AsyncIterator[int]:
    quiet_client_faults()
    quiet_client_faults()  # twice: still one filter
    assert len(logging.getLogger(SERVER_LOGGER).filters) == 1
    app = web.Application()
    app.router.add_get("/explode", explode)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    reply = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return reply


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\x00: y\r\n\r\n",  # a bad header token
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",  # line too long
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ],
)
async def test_a_malformed_request_is_a_400_and_one_warning_without_traceback(
    port: int, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, SERVER_LOGGER):
        reply = await raw(port, request_bytes)
        await asyncio.sleep(0.05)
    assert reply.split(b" ", 2)[1] == b"400"
    assert reply.partition(b"\r\n\r\n")[2].strip(), "a 400 says why"
    records = [r for r in caplog.records if r.name == SERVER_LOGGER]
    assert [r.levelname for r in records] == ["WARNING"]
    assert records[0].exc_info is None and "refused a bad request" in records[0].getMessage()
    assert "400" in records[0].getMessage()
    assert "Traceback" not in caplog.text


async def test_a_handler_bug_still_logs_its_traceback(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, SERVER_LOGGER):
        reply = await raw(port, b"GET /explode HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.split(b" ", 2)[1] == b"500"
    [record] = [r for r in caplog.records if r.name == SERVER_LOGGER]
    assert record.levelname == "ERROR" and record.exc_info is not None
