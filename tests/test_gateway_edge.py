"""The gateway's edge in process: Host (DNS rebinding), Origin, CSRF, tokens and sessions.

The real web app (every feature's routes) in this test's event loop, with real accounts;
what it would publish is collected instead of going to a broker.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from dovecote import activity as act
from dovecote_testing.gateway import DEMO_PASSWORD
from services.gateway.bus.hub import Hub
from services.gateway.web.app import create_app
from tests.fixtures import gateway_context, in_process_gateway


@dataclass
class Edge:
    url: str
    client: TestClient[Any, Any]
    published: list[tuple[str, act.Activity]] = field(default_factory=list)

    async def sign_in(self, person: str = "ada") -> str:
        """Sign in through the form (with the page's CSRF token, no Origin); this session's
        CSRF token."""
        page = await (await self.client.get("/signin")).text()
        token = csrf_of(page)
        form = {"username": person, "password": DEMO_PASSWORD, "csrf": token}
        r = await self.client.post("/signin", data=form, allow_redirects=False)
        assert r.status == 303, await r.text()
        return csrf_of(await (await self.client.get("/")).text())

    def topics(self) -> list[str]:
        return [pattern for pattern, _ in self.published]


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found, "every page carries its session's CSRF token"
    return found[1]


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async with (
        in_process_gateway(tmp_path) as served,
        TestClient(served.server, cookie_jar=aiohttp.CookieJar(unsafe=True)) as client,
    ):
        yield Edge(served.url, client, served.published)


async def test_a_foreign_host_is_refused_before_anything_else(edge: Edge) -> None:
    """DNS rebinding: evil.example resolved to this machine; the browser sends its name."""
    for method, path in (("GET", "/"), ("POST", "/api/builds"), ("GET", "/users/ada")):
        r = await edge.client.request(method, path, headers={"Host": "evil.example:80"})
        assert r.status == 421, (method, path)
        assert "PUBLIC_URL" in await r.text()
        assert "dovecote_session" not in r.headers.get("Set-Cookie", "")
    r = await edge.client.get("/", headers={"Host": edge.url.removeprefix("http://")})
    assert r.status == 200
    r = await edge.client.get("/healthz", headers={"Host": "10.0.0.7"})  # a load balancer
    assert r.status == 200
    assert edge.published == []


async def test_a_state_change_needs_the_exact_origin_or_the_csrf_token(edge: Edge) -> None:
    token = await edge.sign_in("ada")
    post = edge.client.post
    # Refused: no Origin and no token; a wrong token; another origin, even with the token.
    refused: list[dict[str, str]] = [
        {},
        {"X-CSRF-Token": "not-the-token"},
        {"Origin": "http://evil.example", "X-CSRF-Token": token},
        {"Origin": edge.url.replace("127.0.0.1", "localhost")},  # another host name
        {"Origin": edge.url.rsplit(":", 1)[0] + ":1"},  # another port: same site, not origin
        {"Origin": "null"},
    ]
    for headers in refused:
        r = await post("/api/builds", json={}, headers=headers)
        assert r.status == 403, headers
        assert "refused" in await r.text()
    assert edge.published == []
    # Accepted: the exact Origin alone (what a browser sends) or the token alone.
    r = await post("/api/builds", json={}, headers={"Origin": edge.url})
    assert r.status == 202, await r.text()
    r = await post("/api/builds", json={}, headers={"X-CSRF-Token": token})
    assert r.status == 202, await r.text()
    assert edge.topics() == ["commands/builder/start"] * 2
    assert all(a.actor.preferredUsername == "ada" for _, a in edge.published)


async def test_a_form_carries_its_token_and_signing_out_needs_it(edge: Edge) -> None:
    token = await edge.sign_in("grace")
    r = await edge.client.post("/signout", data={"csrf": "forged"}, allow_redirects=False)
    assert r.status == 403
    assert 'data-user="grace"' in await (await edge.client.get("/")).text()
    r = await edge.client.post("/signout", data={"csrf": token}, allow_redirects=False)
    assert r.status == 303
    assert 'data-user=""' in await (await edge.client.get("/")).text()


async def test_a_script_uses_its_token_and_a_revoked_one_is_refused(edge: Edge) -> None:
    csrf = await edge.sign_in("linus")
    r = await edge.client.post(
        "/account/tokens",
        data={"name": "ci", "csrf": csrf},
        headers={"Accept": "application/json"},
    )
    assert r.status == 201
    made = await r.json()
    async with aiohttp.ClientSession() as script:  # no cookie, no Origin, no CSRF token
        bearer = {"Authorization": f"Bearer {made['token']}"}
        async with script.post(f"{edge.url}/api/builds", json={}, headers=bearer) as r:
            assert r.status == 202, await r.text()
        async with script.get(f"{edge.url}/account", headers=bearer) as r:
            assert r.status == 403  # a token cannot manage tokens
        page = await (await edge.client.get("/account")).text()
        assert f"dct_{made['id']}_…" in page and made["token"] not in page  # shown once
        r = await edge.client.post(
            f"/account/tokens/{made['id']}/revoke", data={"csrf": csrf}, allow_redirects=False
        )
        assert r.status == 303
        async with script.post(f"{edge.url}/api/builds", json={}, headers=bearer) as r:
            assert r.status == 401 and "revoked" in await r.text()
        for wrong in ("Bearer dct_0123456789ab_" + "x" * 43, "Basic YWRhOmFkYQ==", "Bearer"):
            async with script.post(
                f"{edge.url}/api/builds", json={}, headers={"Authorization": wrong}
            ) as r:
                assert r.status == 401, wrong
    assert [(p, a.actor.preferredUsername) for p, a in edge.published] == [
        ("commands/builder/start", "linus"),
        ("commands/gateway/disconnect", "linus"),  # the other gateways close its sockets
    ]
    assert edge.published[1][1].object.items == [f"token:{made['id']}"]


async def test_signing_in_makes_a_new_session_and_wrong_passwords_say_nothing_more(
    edge: Edge,
) -> None:
    before = csrf_of(await (await edge.client.get("/signin")).text())
    answers = []
    for name, password in (("ada", "wrong password"), ("nobody-here", DEMO_PASSWORD)):
        form = {"username": name, "password": password, "csrf": before}
        r = await edge.client.post("/signin", data=form, allow_redirects=False)
        answers.append((r.status, "Wrong user name or password" in await r.text()))
    assert answers == [(401, True), (401, True)]
    form = {"username": "ada", "password": DEMO_PASSWORD, "csrf": before}
    r = await edge.client.post("/signin", data=form, allow_redirects=False)
    assert r.status == 303
    [cookie] = [c for c in r.headers.getall("Set-Cookie") if c.startswith("dovecote_session=")]
    flags = {f.strip().split("=")[0].lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "max-age"} <= flags and "secure" not in flags
    assert "SameSite=Lax" in cookie
    after = csrf_of(await (await edge.client.get("/")).text())
    assert after != before  # a planted session (and its token) does not survive signing in


async def test_a_cross_origin_socket_is_refused_and_a_signed_out_one_is_nobody(
    edge: Edge,
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await edge.client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as misdirected:
        await edge.client.ws_connect("/ws", headers={"Host": "evil.example"})
    assert misdirected.value.status == 421
    ws = await edge.client.ws_connect("/ws?as=ada", headers={"Origin": edge.url})
    hello = await ws.receive_json()
    assert hello["type"] == "hello" and hello["user"] is None
    await ws.close()


def test_secure_cookies_when_public_url_is_https(tmp_path: Path) -> None:
    ctx = gateway_context(Hub(), "https://dovecote.example", tmp_path)
    app = create_app(ctx)
    storage = next(
        m
        for m in app.middlewares
        if getattr(m, "__qualname__", "").startswith("session_middleware")
    )
    cells = [c.cell_contents for c in storage.__closure__ or ()]  # type: ignore[attr-defined]
    [store] = [c for c in cells if hasattr(c, "cookie_params")]
    assert store.cookie_params["secure"] is True and store.cookie_params["samesite"] == "Lax"
    ctx.people.close()


_ = web  # the app factory's types
