"""Any service's state on the dashboard: a service made with ``dovecote new-service`` shows
its retained state as a card in Debian's headless chromium, with no gateway or page edit
(issue 14). The feed of the dashboard has a placeholder and survives a reload."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dovecote_testing.plugin import Probe
from tests.fixtures import Federation, sign_in_page, wait_http
from tests.test_scaffold import repo_copy, run

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.mark.brokers("mosquitto")  # it proves the cards; test_scaffold proves the rest
async def test_a_new_service_has_its_card_on_the_dashboard_with_no_gateway_edit(
    tmp_path: Path, service_env: dict[str, str], probe: Probe, browser: Any
) -> None:
    repo = repo_copy(tmp_path / "repo")
    env = {**service_env, "PYTHONPATH": str(repo), "BUILD_TICK_SECONDS": "0.05"}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    await run([*git, "init", "-q"], repo, env)
    await run([*git, "add", "-A"], repo, env)
    await run([*git, "commit", "-qm", "before"], repo, env)
    cli = [sys.executable, "-m", "dovecote.tools.cli"]
    await run([*cli, "new-service", "badges"], repo, env)
    changed, _ = await run(["git", "status", "--porcelain", "--untracked-files=all"], repo, env)
    touched = sorted(line[3:] for line in changed.splitlines())
    # Its folder, its lines in the federation's lists, and what is generated from it (the
    # contract, the broker's permissions, its unit, its setting in the env example): not
    # one gateway, page or shared file.
    lists = ("services/contracts.py", "services/federation.py")
    made = ("services/badges/", "docs/", "deploy/", *lists)
    assert touched and all(f.startswith(made) for f in touched)

    sup = await asyncio.create_subprocess_exec(
        *cli, "run", "builder", "badges", "notifier", "gateway", cwd=repo, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = env["PUBLIC_URL"]
        await wait_http(f"{url}/healthz", timeout=60)
        for service in ("builder", "badges", "gateway"):
            await probe.wait_online(service, timeout=30)
        async with aiohttp.ClientSession() as http, http.get(f"{url}/api/cards") as r:
            cards = {card["pattern"]: card for card in await r.json()}
        assert cards["state/badges"]["title"] == "badges"  # with the tweeter's, in the copy
        page = await (await browser.new_context()).new_page()
        await sign_in_page(page, url, "ada")
        card = page.locator("[data-card='state/badges']")
        assert await card.locator("h2").text_content() == "badges"
        assert await card.locator(".empty").text_content() == "Nothing yet."
        await page.click("#start")
        await card.locator("dl").wait_for(timeout=20_000)
        facts = await card.locator("dt, dd").all_text_contents()
        assert facts[:3] == ["Last note", "Build #1 succeeded, noted by badges", "When"]
        assert facts[3]  # the time, in the reader's own zone

        # Retained: a page opened now shows it at once, its socket blocked.
        late = await page.context.new_page()
        await late.route("**/ws", lambda route: route.abort())
        await late.goto(f"{url}/")
        await late.locator("[data-card='state/badges'] dd").first.wait_for()
        assert await late.locator("[data-card='state/badges'] dd").first.text_content() == (
            "Build #1 succeeded, noted by badges"
        )
    finally:
        sup.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(sup.communicate(), 30)
        print(output.decode()[-4000:])
    assert sup.returncode == 0


async def test_the_feed_has_a_placeholder_and_survives_a_reload(
    federation: Federation, browser: Any
) -> None:
    page = await browser.new_page()
    await page.goto(f"{federation.url}/")
    await page.wait_for_selector("#connection.pill-ok")
    placeholder = await page.text_content("#feed .feed-empty") or ""
    assert placeholder.startswith("Nothing on the bus yet")
    # One sentence across the card, not squeezed into the time column of the feed's grid.
    text_width, feed_width = await page.evaluate(
        """() => {
            const range = document.createRange();
            range.selectNodeContents(document.querySelector('#feed .feed-empty'));
            return [range.getBoundingClientRect().width,
                    document.querySelector('#feed').getBoundingClientRect().width];
        }"""
    )
    assert text_width > 0.8 * feed_width, (text_width, feed_width)
    async with (
        await federation.signed_in("ada") as http,
        http.post(f"{federation.url}/api/builds", json={}) as r,
    ):
        assert r.status == 202
    await page.wait_for_selector("#feed code:text('events/build/succeeded')", timeout=15_000)
    assert await page.locator("#feed .feed-empty").count() == 0
    live = await page.locator("#feed li").all_text_contents()

    # Reloaded with its socket blocked: the feed comes from the server, as it was.
    await page.route("**/ws", lambda route: route.abort())
    await page.reload()
    assert await page.locator("#feed .feed-empty").count() == 0
    assert await page.locator("#feed li").all_text_contents() == live
