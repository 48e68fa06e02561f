"""Fixtures for whole services: a running gateway (+ builder), and a real headless browser."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy

from dovecote.project import PROJECT
from dovecote.store import Place
from dovecote_testing.gateway import DEMO_PASSWORD, demo_password_hash, signed_in, token_for
from dovecote_testing.plugin import Databases, Probe, ServiceProcess, StartService

CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Federation:
    url: str  # the gateway's base URL
    probe: Probe
    gateway: ServiceProcess
    builder: ServiceProcess | None

    async def signed_in(self, person: str) -> aiohttp.ClientSession:
        """An HTTP session signed in as a demo person, as a browser (Origin on requests)."""
        return await signed_in(self.url, person)

    async def api_token(self, person: str) -> str:
        return await token_for(self.url, person)


async def wait_http(url: str, timeout: float = 30.0) -> None:
    """Until ``url`` answers 200. A gateway's ``/healthz`` does once it can reach the bus (its
    subscriptions granted), a few hundred ms after it serves HTTP; under load (two cores
    shared with other suites) starting it has taken over 15 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if loop.time() > deadline:
                raise AssertionError(f"{url} did not answer in {timeout} s")
            await asyncio.sleep(0.1)


async def dovecote_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``dovecote ARGS`` as an operator types it: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dovecote.tools.cli",
        *args,
        env=env,
        cwd=PROJECT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def deadletter_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``dovecote deadletter ARGS``."""
    return await dovecote_cli(env, "deadletter", *args)


@pytest.fixture
async def federation(
    request: pytest.FixtureRequest,
    start_service: StartService,
    service_env: dict[str, str],
    probe: Probe,
) -> Federation:
    """Builder, notifier and gateway as real processes on the private broker, gateway
    answering.

    ``@pytest.mark.build_tick(seconds)`` slows the build for tests that act mid-build.
    """
    tick = request.node.get_closest_marker("build_tick")
    builder = start_service(
        "builder", **({"BUILD_TICK_SECONDS": str(tick.args[0])} if tick else {})
    )
    start_service("notifier")  # keeps the inboxes a signed-in page is drawn with
    gateway = start_service("gateway")
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz")
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
    await probe.wait_for("services/notifier/1", lambda a: a["type"] == "Join")
    await probe.wait_for("services/gateway/1", lambda a: a["type"] == "Join")  # subscribed
    return Federation(url, probe, gateway, builder)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium driven by Playwright; Playwright never downloads a browser here."""
    from playwright.async_api import async_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail(
            f"chromium not found at {CHROMIUM}: run `make test` (installs it) or set CHROMIUM"
        )
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        await b.close()


@dataclass
class Pipeline:
    """Gateway, resizer, notifier and points as real processes, sharing one image store."""

    url: str
    probe: Probe
    images_dir: Path
    points_db: Path
    token: str
    services: dict[str, ServiceProcess]
    start: Callable[..., ServiceProcess]  # (re)start a service with the pipeline's env (+ more)

    def users_url(self, user: str) -> str:
        return f"{self.url}/users/{user}"

    async def signed_in(self, person: str) -> aiohttp.ClientSession:
        return await signed_in(self.url, person)

    async def api_token(self, person: str) -> str:
        return await token_for(self.url, person)

    def stored_files(self) -> list[Path]:
        return sorted(p for p in self.images_dir.rglob("*") if p.is_file())


PIPELINE = ("resizer", "notifier", "points", "gateway")


async def joined(probe: Probe, service: str, count: int = 1) -> None:
    await probe.wait_for(f"services/{service}/1", lambda a: a["type"] == "Join", count=count)


@pytest.fixture
async def pipeline(
    start_service: StartService, service_env: dict[str, str], probe: Probe, tmp_path: Path
) -> Pipeline:
    token = secrets.token_urlsafe(24)
    env = {
        "IMAGES_DIR": str(tmp_path / "images"),
        "POINTS_DB": str(tmp_path / "points.sqlite3"),
        "DOVECOTE_SERVICE_TOKEN": token,
        "IMAGE_MAX_BYTES": str(2 * 1024 * 1024),
    }

    def start(name: str, **more: str) -> ServiceProcess:
        return start_service(name, **{**env, **more})

    services = {name: start(name) for name in PIPELINE}
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz")
    for name in PIPELINE:
        await joined(probe, name)
    return Pipeline(
        url, probe, tmp_path / "images", tmp_path / "points.sqlite3", token, services, start
    )


async def sign_in_page(page: Any, url: str, person: str, password: str = DEMO_PASSWORD) -> None:
    """Sign in through the real form, as a person types it; lands on the dashboard, live."""
    await page.goto(f"{url}/signin")
    await page.fill("input[name=username]", person)
    await page.fill("input[name=password]", password)
    await page.click("#signin-button")
    await page.wait_for_url(f"{url}/")
    await page.wait_for_selector("#connection.pill-ok")


async def open_as(browser: Any, url: str, person: str, **context: Any) -> Any:
    """A page signed in as ``person`` in a browser context of its own: their own cookies,
    as two people's browsers would be."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900}, **context)
    page = await ctx.new_page()
    await sign_in_page(page, url, person)
    return page


def gateway_context(
    hub: Any,
    base_url: str,
    data: Path,
    publish: Any = None,
    bus_up: bool = True,
    accounts: Place | None = None,
) -> Any:
    """A gateway's context for its web app run in a test's own event loop (no broker): real
    accounts with the demo people (``DEMO_PASSWORD``), a fresh session key; no notifier
    answers, so a page renders without its inbox (after 0.1 s). What it publishes is
    collected: its link to the bus is up (``bus_up``: as the test says). The accounts are in
    ``data`` (a SQLite file), or in ``accounts`` (a place of ``databases``)."""
    from concurrent.futures import ThreadPoolExecutor

    from dovecote.link import Link
    from services.gateway.accounts import people
    from services.gateway.accounts.guesses import DeviceCookies
    from services.gateway.accounts.people import People
    from services.gateway.context import Context
    from services.gateway.social.inbox_client import InboxClient
    from services.gateway.social.person_as2 import Directory
    from services.gateway.web import sessions
    from services.gateway.web.limits import Limits

    store = People(accounts or Place.file(data / "accounts.sqlite3")).open()
    store.seed(people.DEMO_PEOPLE, demo_password_hash())
    send = publish or (lambda entry, activity: None)
    key = sessions.new_key()
    link = Link()
    if bus_up:
        link.went_up()
    return Context(
        hub=hub,
        people=store,
        directory=Directory(base_url),
        publish=send,
        root="t",
        public_url=base_url,
        session_key=key,
        session_max_age=3600,
        inbox=InboxClient(lambda entry, activity: None, 0.1),  # no notifier: pages go without
        limits=Limits({}),
        hashing=ThreadPoolExecutor(1),
        devices=DeviceCookies(key, secure=False),
        link=link,
    )


@dataclass
class InProcessGateway:
    """The gateway's real web app served on a free port in the test's own event loop."""

    url: str
    ctx: Any
    server: Any  # aiohttp.test_utils.TestServer, started
    published: list[tuple[str, Any]]


@contextlib.asynccontextmanager
async def in_process_gateway(
    data: Path, accounts: Place | None = None
) -> AsyncIterator[InProcessGateway]:
    """``gateway_context`` served (no broker): what it publishes is collected in
    ``published`` as (topic pattern, activity). Closed with its sockets and accounts."""
    from aiohttp.test_utils import TestServer

    from dovecote.tools.broker import free_port
    from services.gateway.bus.hub import Hub
    from services.gateway.web.app import create_app

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    published: list[tuple[str, Any]] = []
    ctx = gateway_context(
        Hub(), url, data, lambda e, a: published.append((e.pattern, a)), accounts=accounts
    )
    server = TestServer(create_app(ctx), host="127.0.0.1", port=port)
    await server.start_server()
    try:
        yield InProcessGateway(url, ctx, server, published)
    finally:
        await server.close()  # the app closes its sockets, threads and accounts


def start_poisoned_tally(
    start_service: StartService, tmp_path: Path, work: str, attempts: str, **env: str
) -> tuple[Path, Path]:
    """The test service tally (``tests/services/tally``), whose handler fails on an item
    with content "poison" while the bug file exists (remove it: the fix). Returns the bug
    file and the ledger."""
    poison, db = tmp_path / "bug", tmp_path / "tally.sqlite"
    poison.write_text("the handler fails while this file exists")
    start_service(
        "tally",
        package="tests.services",
        TALLY_DB=str(db),
        TALLY_WORK_SECONDS=work,
        TALLY_POISON_FILE=str(poison),
        DOVECOTE_HANDLER_ATTEMPTS=attempts,
        **env,
    )
    return poison, db


def kept(people: Any, databases: Databases) -> bytes:
    """Everything the store keeps, as bytes: the files (the WAL too) on SQLite, every
    row of every table on PostgreSQL."""
    if databases.kind == "sqlite":
        return b"".join(f.read_bytes() for f in databases.folder.glob("accounts.sqlite3*"))
    with people.transaction() as conn:
        tables = conn.execute(
            sqlalchemy.text("SELECT tablename FROM pg_tables WHERE schemaname = 'accounts'")
        ).scalars()
        rows = [conn.execute(sqlalchemy.text(f"SELECT * FROM {t}")).all() for t in list(tables)]
    return repr(rows).encode()
