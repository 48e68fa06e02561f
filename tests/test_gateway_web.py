"""The gateway's security headers on answers its handlers did not plan: crashes, timeouts."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.gateway.web.edge import SECURITY_HEADERS, security_headers


async def crash(_: web.Request) -> web.Response:
    raise RuntimeError("a bug with <b>markup</b> in its message")


async def stall(_: web.Request) -> web.Response:
    raise TimeoutError


@pytest.mark.parametrize(("path", "status"), [("/crash", 500), ("/stall", 504), ("/nope", 404)])
async def test_a_crash_or_timeout_answers_with_the_security_headers(
    path: str, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    app = web.Application(middlewares=[security_headers])
    app.router.add_get("/crash", crash)
    app.router.add_get("/stall", stall)
    async with TestClient(TestServer(app)) as client:
        r = await client.get(path)
        assert r.status == status
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get(name) == value
        body = await r.text()
    assert r.content_type == "text/plain"  # never an HTML page
    assert "<b>" not in body  # nor the exception's text: that is for the log
    if status == 500:
        assert "a bug with" in caplog.text
