"""The accounts store on one PostgreSQL (issue 24): two real gateway processes with their own
data folders and one ``DATABASE_URL`` are one set of accounts (a person who signed up on
one signs in on the other, with one session key neither was given, one count of guesses,
one sign-out); and a database that stops makes the requests that need it a 503, not a 500
or a hang, until it is back."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from dovecote.store import Place
from dovecote.tools.broker import free_port
from dovecote_testing.gateway import DEMO_PASSWORD, signed_in
from dovecote_testing.plugin import StartService
from dovecote_testing.postgres import PrivatePostgres
from tests.fixtures import in_process_gateway, wait_http

MARIE = {"username": "marie", "name": "Marie Curie", "password": "radium-and-polonium"}


def browser(url: str) -> aiohttp.ClientSession:
    """Cookies kept for 127.0.0.1 whatever the port: one browser in front of both gateways
    (a load balancer's two machines)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Origin": url})


async def sign_in_status(url: str, user: str, password: str) -> int:
    async with (
        browser(url) as http,
        http.post(
            f"{url}/signin", data={"username": user, "password": password}, allow_redirects=False
        ) as r,
    ):
        return r.status


@pytest.mark.brokers("mosquitto")  # the accounts are the point: any broker will do
async def test_two_gateway_processes_on_one_database_are_one_set_of_accounts(
    start_service: StartService, service_env: dict[str, str], postgres: PrivatePostgres,
    tmp_path: Path,
) -> None:  # fmt: skip
    # Two machines: no shared files, no DOVECOTE_SESSION_KEY, one database.
    shared = {
        "DATABASE_URL": postgres.new_database(),
        "DOVECOTE_SESSION_KEY": "",
        "RATE_SIGNIN_ACCOUNT": "3/3600",
    }
    port_b = free_port()
    url_a, url_b = service_env["PUBLIC_URL"], f"http://127.0.0.1:{port_b}"
    start_service("gateway", **shared)  # both start at once: one migrates, one makes the key
    start_service(
        "gateway",
        DOVECOTE_INSTANCE="2",
        PORT=str(port_b),
        PUBLIC_URL=url_b,
        DOVECOTE_DATA_DIR=str(tmp_path / "machine-b"),
        **shared,
    )
    await asyncio.gather(wait_http(f"{url_a}/healthz"), wait_http(f"{url_b}/healthz"))
    async with browser(url_a) as http:
        async with http.post(f"{url_a}/signup", data=MARIE, allow_redirects=False) as r:
            assert r.status == 303, await r.text()
        # The cookie gateway A made is read by gateway B: one session key, from the store.
        async with http.get(f"{url_b}/account", allow_redirects=False) as r:
            assert r.status == 200, r.headers.get("Location")
        async with http.post(f"{url_a}/signout", allow_redirects=False) as r:
            assert r.status == 303
    async with await signed_in(url_b, "marie", MARIE["password"]) as on_b:
        async with on_b.get(f"{url_b}/users/marie") as r:
            assert r.status == 200 and (await r.json())["name"] == "Marie Curie"
        async with on_b.get(f"{url_a}/account", allow_redirects=False) as r:
            assert r.status == 200  # and B's sign-in counts on A
        async with on_b.post(f"{url_b}/signout", allow_redirects=False) as r:
            assert r.status == 303
        async with on_b.get(f"{url_a}/account", allow_redirects=False) as r:
            assert r.status == 303  # signed out on B: the cookie is dead on A at once
    # Guesses at one account count on both: 3 an hour, two on A and the third on B, then
    # neither lets a fourth through.
    wrong = [sign_in_status(u, "linus", "not-his-password") for u in (url_a, url_a, url_b)]
    assert [await guess for guess in wrong] == [401, 401, 401]
    assert await sign_in_status(url_a, "linus", DEMO_PASSWORD) == 429
    assert await sign_in_status(url_b, "linus", DEMO_PASSWORD) == 429


@pytest.fixture
def own_postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL of this test's own, to stop and start (the session's serves
    every other test meanwhile)."""
    folder = Path(tempfile.mkdtemp(prefix="dovecote-pg-"))
    server = PrivatePostgres(folder).start()
    yield server
    server.stop("immediate")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.real_broker  # it starts a PostgreSQL, though no broker
async def test_a_sign_in_while_the_database_is_down_is_a_503_and_works_once_it_is_back(
    own_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    accounts = Place.postgres(own_postgres.new_database(), "accounts")
    async with in_process_gateway(tmp_path, accounts) as gateway:
        url = gateway.url
        assert await sign_in_status(url, "ada", DEMO_PASSWORD) == 303  # connections pooled
        await asyncio.to_thread(own_postgres.stop)
        began = time.monotonic()
        async with (
            browser(url) as http,
            http.post(
                f"{url}/signin",
                data={"username": "ada", "password": DEMO_PASSWORD},
                allow_redirects=False,
            ) as r,
        ):
            assert r.status == 503
            assert r.headers["Retry-After"].isdigit()
            assert "accounts store cannot be reached" in await r.text()
            assert r.headers["X-Content-Type-Options"] == "nosniff"  # the edge's headers too
        took = time.monotonic() - began
        assert took < 5, took  # at once, not the timeout of a hung connection
        async with browser(url) as http, http.get(f"{url}/healthz") as r:
            assert r.status == 200  # what needs no store is served meanwhile
        await asyncio.to_thread(own_postgres.start)
        assert await sign_in_status(url, "ada", DEMO_PASSWORD) == 303
    print(f"a sign-in with the database down: 503 in {took * 1000:.0f} ms")
