"""Honest status, in Debian's headless chromium: a control that cannot work says why, a
photo waiting for an offline resizer says so and fills in when it is back, a failed or
stopped build says why and who stopped it, and a Start that waited too long is refused
with a reason the page shows (issue 14)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dovecote import activity as act
from tests import imagefiles
from tests.fixtures import Pipeline, joined, open_as

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def left(pipeline: Pipeline, service: str, count: int = 1) -> None:
    await pipeline.probe.wait_for(
        f"services/{service}/1", lambda a: a["type"] == "Leave", count=count, timeout=30
    )


async def test_an_offline_builder_or_resizer_is_said_and_their_return_is_seen(
    pipeline: Pipeline, browser: Any
) -> None:
    builder = pipeline.start("builder", BUILD_TICK_SECONDS="0.05", BUILD_COMMAND_MAX_AGE="2")
    await joined(pipeline.probe, "builder")
    ada = await open_as(browser, pipeline.url, "ada")
    assert await ada.is_enabled("#start")
    assert await ada.is_hidden("#start-why")
    assert await ada.text_content("#stop-why") == "Stop: no build is running"
    assert await ada.is_disabled("#stop")

    # The builder goes: Start says why it cannot be pressed, on the page as it is.
    await asyncio.to_thread(builder.stop)
    await left(pipeline, "builder")
    await ada.wait_for_selector("#start:disabled")
    assert await ada.text_content("#start-why") == "Start: builder is offline"
    assert await ada.is_disabled("#should-fail")
    # ... and on a page opened now, drawn by the server.
    late = await ada.context.new_page()
    await late.route("**/ws", lambda route: route.abort())
    await late.goto(pipeline.url + "/")
    assert await late.is_disabled("#start")
    assert await late.text_content("#start-why") == "Start: builder is offline"

    # A Start that waited while the builder was offline (here: in a gateway's outbox, as
    # through a broker outage) is refused when the builder gets it; the page says so.
    stale = act.new(
        "Start",
        {"type": "Person", "id": f"{pipeline.url}/users/ada", "name": "Ada Lovelace"},
        {"type": "Build"},
    )
    pipeline.probe.publish("commands/builder/start", stale)
    await pipeline.probe.conn.flush()
    await asyncio.sleep(2.5)  # older than BUILD_COMMAND_MAX_AGE (2 s) when the builder is back
    pipeline.start("builder", BUILD_TICK_SECONDS="0.05", BUILD_COMMAND_MAX_AGE="2")
    await joined(pipeline.probe, "builder", count=2)
    await ada.wait_for_selector("#start:enabled")
    await ada.wait_for_function(
        "() => document.querySelector('#build-note').textContent.includes('Start expired')"
    )
    note = await ada.text_content("#build-note") or ""
    assert note.startswith("Ada Lovelace's Start expired: it was sent "), note
    assert "(the builder was offline)" in note, note  # it was: not the gateway (issue 22)
    assert await ada.text_content("#build-name") == "No build yet"  # it never ran
    assert not pipeline.probe.on("events/build/started")

    # The resizer goes: a new photo's tile says what it waits for, then fills in.
    await asyncio.to_thread(pipeline.services["resizer"].stop)
    await left(pipeline, "resizer")
    photo = {"name": "wait.jpg", "mimeType": "image/jpeg", "buffer": imagefiles.photo(800, 600)}
    await ada.set_input_files("#upload-file", files=[photo])
    await ada.click("#upload-button")
    pending = ada.locator("#gallery .tile .pending-text")
    await pending.wait_for()
    assert await pending.text_content() == (
        "waiting for the resizer: it is offline; the thumbnail comes when it is back"
    )
    pipeline.start("resizer")
    await joined(pipeline.probe, "resizer", count=2)
    await ada.wait_for_selector("#gallery .tile.resized img", timeout=20_000)
    assert await ada.locator("#gallery .pending-text").count() == 0


async def test_a_failed_or_stopped_build_says_why_and_who_stopped_it(
    pipeline: Pipeline, browser: Any
) -> None:
    pipeline.start("builder", BUILD_TICK_SECONDS="0.3")
    await joined(pipeline.probe, "builder")
    ada = await open_as(browser, pipeline.url, "ada")
    grace = await open_as(browser, pipeline.url, "grace")

    await ada.check("#should-fail")
    await ada.click("#start")
    await ada.wait_for_selector("#bar.state-failed", timeout=15_000)
    for page in (ada, grace):
        await page.wait_for_selector("#build-why:not([hidden])")
        assert await page.text_content("#build-why") == (
            "failed at 70 %, as asked when it was started"
        )
    await ada.uncheck("#should-fail")
    await ada.click("#start")
    await grace.wait_for_selector("#bar.state-running")
    assert await grace.is_hidden("#build-why")  # a running build has no ending to explain
    await ada.wait_for_function(
        "() => Number(document.querySelector('#progress').getAttribute('aria-valuenow')) >= 20"
    )
    await ada.click("#stop")
    for page in (ada, grace):  # Grace sees who stopped it
        await page.wait_for_selector("#bar.state-stopped", timeout=10_000)
        why = await page.text_content("#build-why") or ""
        assert why.startswith("stopped by Ada Lovelace at ") and why.endswith(" %"), why
        history = await page.locator("#history .result-why").all_text_contents()
        assert history == [why, "failed at 70 %, as asked when it was started"]
    [stopped] = pipeline.probe.on("events/build/stopped")
    assert stopped["object"]["stoppedBy"]["name"] == "Ada Lovelace"
