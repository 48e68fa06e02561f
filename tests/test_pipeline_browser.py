"""The image pipeline in Debian's headless chromium: upload, thumbnail, notification, points."""

from __future__ import annotations

from typing import Any

import pytest

from tests import imagefiles
from tests.fixtures import Pipeline, open_as

pytestmark = pytest.mark.browser

TITLE = 'Cat <img src=x onerror="document.title=1">'


async def test_upload_thumbnail_notification_and_points_live(
    pipeline: Pipeline, browser: Any
) -> None:
    ada = await open_as(browser, pipeline.url, "ada")
    grace = await open_as(browser, pipeline.url, "grace")
    assert await ada.text_content("#my-points-value") == "0"

    photo = {"name": "cat.jpg", "mimeType": "image/jpeg", "buffer": imagefiles.photo(1200, 900)}
    await ada.set_input_files("#upload-file", files=[photo])
    await ada.fill("#upload-title", TITLE)
    await ada.click("#upload-button")

    # The thumbnail replaces the placeholder, in the uploader's page and in everyone else's.
    for page in (ada, grace):
        img = await page.wait_for_selector("#gallery .tile.resized img", timeout=20_000)
        await page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=img, timeout=10_000
        )
        assert "/thumbnails/" in (await img.get_attribute("src") or "")
        assert await page.text_content("#gallery .caption-title") == TITLE  # text, not markup
        assert await page.locator("#gallery img").count() == 1
        assert await page.title() == "Dovecote — live"  # the title's markup never ran

    # Grace follows Ada: her page gets the notification; Ada's own page does not.
    note = await grace.wait_for_selector("#notifications .note-item", timeout=15_000)
    assert "Ada Lovelace shared a photo" in (await note.text_content() or "")
    assert await grace.text_content("#notes-count") == "1"

    # Ada's points rise on the leaderboard, live, in both pages.
    await ada.wait_for_selector(".leader.mine .leader-points:text('10')", timeout=15_000)
    assert await ada.text_content("#my-points-value") == "10"
    await grace.wait_for_selector(".leader[data-user='ada'] .leader-points:text('10')")
    assert await ada.locator("#notifications .note-item").count() == 0

    # A page opened now shows the photo at once, from the store (no event needed).
    late = await open_as(browser, pipeline.url, "linus")
    await late.wait_for_selector("#gallery .tile.resized img")
