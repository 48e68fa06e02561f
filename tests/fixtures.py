"""Fixtures for whole services: a running gateway (+ builder), and a real headless browser."""

from __future__ import annotations

import asyncio
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

from dovecote.project import PROJECT
from dovecote.testing.plugin import Probe, ServiceProcess, StartService

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


async def wait_http(url: str, timeout: float = 15.0) -> None:
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


async def deadletter_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``dovecote deadletter ARGS`` as an operator types it: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dovecote.tools.cli",
        "deadletter",
        *args,
        env=env,
        cwd=PROJECT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def federation(
    request: pytest.FixtureRequest,
    start_service: StartService,
    service_env: dict[str, str],
    probe: Probe,
) -> Federation:
    """Builder and gateway as real processes on the private broker, gateway answering.

    ``@pytest.mark.build_tick(seconds)`` slows the build for tests that act mid-build.
    """
    tick = request.node.get_closest_marker("build_tick")
    builder = start_service(
        "builder", **({"BUILD_TICK_SECONDS": str(tick.args[0])} if tick else {})
    )
    gateway = start_service("gateway")
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz")
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
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
    start: Callable[[str], ServiceProcess]  # (re)start a service with the pipeline's env

    def users_url(self, user: str) -> str:
        return f"{self.url}/users/{user}"

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

    def start(name: str) -> ServiceProcess:
        return start_service(name, **env)

    services = {name: start(name) for name in PIPELINE}
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz")
    for name in PIPELINE:
        await joined(probe, name)
    return Pipeline(
        url, probe, tmp_path / "images", tmp_path / "points.sqlite3", token, services, start
    )
