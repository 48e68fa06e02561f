"""The operations page in Debian's headless chromium, against real services and a broker:
the charts the page draws from every worker's reports, a dead letter replayed with a
click, one build's trace, and who gets to see any of it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dovecote import activity as act
from dovecote_testing.plugin import Probe, StartService, wait_until
from tests.a11y import PHONE, check_screen
from tests.fixtures import Federation, open_as, start_poisoned_tally
from tests.test_operations import ADA, ledger

pytestmark = pytest.mark.browser


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "DOVECOTE_METRICS_INTERVAL": "0.5", "OPERATORS": "ada"}


async def fact(page: Any, worker: str, name: str) -> str:
    text: str = await page.eval_on_selector(
        f'article[data-worker="{worker}"]',
        "(el, name) => [...el.querySelectorAll('.fact')]"
        ".find(f => f.querySelector('dt').textContent === name)?.querySelector('dd').textContent",
        name,
    )
    return text


async def test_an_operator_watches_replays_and_traces_from_the_page(
    federation: Federation,
    browser: Any,
    start_service: StartService,
    probe: Probe,
    tmp_path: Path,
) -> None:
    poison, db = start_poisoned_tally(start_service, tmp_path, "0.001", "2")
    start_service("deadletters")
    await probe.wait_online("tally")
    await probe.wait_online("deadletters")

    page = await open_as(browser, federation.url, "ada")
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.click("#start")  # a build to trace
    [start] = await probe.wait_for("commands/builder/start")
    await probe.wait_for("events/build/succeeded", lambda a: a["context"] == start["context"])
    bad = act.new("Create", ADA, {"type": "Note", "content": "poison"})
    probe.publish("events/tally/item", bad)
    [letter] = await probe.wait_for("deadletter/tally", timeout=30)

    await page.click("#operations-link")
    await page.wait_for_url(f"{federation.url}/operations")
    # Health: a card per worker, its charts drawn by the page (two points make a line).
    for worker in ("builder.1", "notifier.1", "gateway.1", "tally.1", "deadletters.1"):
        await page.wait_for_selector(
            f'article[data-worker="{worker}"] svg.chart path[data-series="rate"][d*="L"]',
            timeout=20_000,
        )
    gateway = 'article[data-worker="gateway.1"]'
    assert await page.locator(f'{gateway} path[data-series="p99"]').count() == 1
    assert "sockets open" in await page.text_content(gateway)
    await wait_until_page(page, lambda: fact(page, "tally.1", "parked"), "1")
    assert await fact(page, "tally.1", "retries") == "1"
    assert await fact(page, "builder.1", "handled") != "0"

    # Dead letters: listed, then replayed with a click once the cause is fixed.
    await page.click("#letters-refresh")
    row = f'#letters tr[data-letter="{letter["id"]}"]'
    await page.wait_for_selector(row, timeout=15_000)
    assert "tally" in await page.text_content(row)
    assert "poisoned while" in await page.text_content(f"{row} .why")
    poison.unlink()
    await page.click(f"{row} button.replay")
    await page.wait_for_function(
        "sel => document.querySelector(sel + ' .replays')?.textContent === '1×'",
        arg=row,
        timeout=15_000,
    )
    await wait_until(lambda: bad["id"] in ledger(db), 20, "the replayed item handled")

    # One build's trace, by the start of its correlation id as `dovecote tail` shows it.
    short = start["context"].removeprefix("urn:uuid:")[:8]
    await page.fill("#trace-input", short)
    await page.click("#trace-button")
    await page.wait_for_selector("#trace tr.step", timeout=15_000)
    steps = await page.eval_on_selector_all(
        "#trace tr.step",
        "rows => rows.map(r => [...r.children].map(c => c.textContent))",
    )
    topics = [s[5] for s in steps]
    assert topics[0] == "commands/builder/start" and steps[0][0] == "0"
    assert "events/build/succeeded" in topics
    assert topics.index("events/build/started") < topics.index("events/build/succeeded")
    since_first = [int(s[0]) for s in steps]
    deltas = [int(s[1]) for s in steps]
    assert since_first == sorted(since_first) and min(deltas) >= 0
    assert sum(deltas) == since_first[-1]  # the times between steps add up
    assert start["context"] in await page.text_content("#trace .trace-head")
    assert page.url.endswith(f"?trace={short}")  # a link to this trace
    await page.wait_for_selector(f'#recent a[data-context="{start["context"]}"]')
    assert problems == []

    # On a phone every column is there, Why and Replay included, with nothing cut off.
    await page.set_viewport_size(PHONE)
    await page.reload()
    await page.wait_for_selector(f"{row} button.replay")
    await page.wait_for_selector("#trace tr.step", timeout=15_000)
    await check_screen(page, "/operations with a dead letter and a trace, 390 px")
    assert await page.is_visible(f"{row} .why") and await page.is_visible(f"{row} button.replay")
    label = await page.eval_on_selector(
        f"{row} .why", "td => getComputedStyle(td, '::before').content"
    )
    assert label == '"Why"'  # each value says which column it is

    # Grace is no operator: no link, and the page is refused.
    other = await open_as(browser, federation.url, "grace")
    assert await other.locator("#operations-link").count() == 0
    response = await other.goto(f"{federation.url}/operations")
    assert response is not None and response.status == 403


async def wait_until_page(page: Any, read: Any, wanted: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (got := await read()) != wanted:
        if loop.time() > deadline:
            raise AssertionError(f"the page shows {got!r}, not {wanted!r}")
        await page.wait_for_timeout(200)
