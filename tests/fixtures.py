"""Fixtures for whole services: a running gateway (+ builder), and a real headless browser."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from shared.testing import Probe, ServiceProcess, StartService

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


@pytest.fixture
async def federation(
    start_service: StartService, service_env: dict[str, str], probe: Probe
) -> Federation:
    """Builder and gateway as real processes on the private broker, gateway answering."""
    builder = start_service("builder")
    gateway = start_service("gateway")
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz")
    await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
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
