"""The gallery in Debian's headless chromium: photos keep their shape, every tile opens the
photo's own page (full size, title, who, when, sizes), more than 24 page in, and all of it
works by keyboard (issue 14)."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests import imagefiles
from tests.a11y import DESKTOP, PHONE, tab_to
from tests.fixtures import Pipeline, open_as

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.brokers("mosquitto")]

SHAPES = [(320, 160), (160, 320), (240, 180), (200, 200), (300, 100)]  # 2:1, 1:2, 4:3, 1:1, 3:1


async def upload_all(pipeline: Pipeline, count: int) -> list[dict[str, Any]]:
    """``count`` photos by Ada, oldest first: "Photo 0" … (a shape each, in turn)."""
    token = await pipeline.api_token("ada")
    done = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for n in range(count):
            width, height = SHAPES[n % len(SHAPES)]
            form = aiohttp.FormData()
            photo = imagefiles.photo(width, height, seed=n)
            form.add_field("file", photo, filename=f"{n}.jpg", content_type="image/jpeg")
            form.add_field("title", f"Photo {n}")
            async with http.post(f"{pipeline.url}/api/images", data=form) as r:
                assert r.status == 201, await r.text()
                done.append({**await r.json(), "width": width, "height": height, "bytes": photo})
    await pipeline.probe.wait_for("events/image/resized", count=count, timeout=60)
    return done


async def titles(page: Any) -> list[str]:
    found: list[str] = await page.locator("#gallery .caption-title").all_text_contents()
    return found


async def test_thirty_photos_page_in_keep_their_shape_and_open_by_keyboard(
    pipeline: Pipeline, browser: Any
) -> None:
    photos = await upload_all(pipeline, 30)
    page = await open_as(browser, pipeline.url, "grace")
    await page.set_viewport_size(DESKTOP)
    await page.wait_for_selector("#gallery .tile.resized >> nth=23")
    assert await titles(page) == [f"Photo {n}" for n in range(29, 5, -1)]  # the newest 24

    # Every tile is a link to its photo's page, and keeps the photo's shape (no crop).
    links = await page.eval_on_selector_all(
        "#gallery .tile-link", "links => links.map((a) => a.getAttribute('href'))"
    )
    assert links == [f"/photos/{photos[n]['id']}" for n in range(29, 5, -1)]
    shapes = await page.eval_on_selector_all(
        "#gallery .frame img",
        """imgs => imgs.map((img) => {
             const box = img.parentElement.getBoundingClientRect();
             return [box.width / box.height, getComputedStyle(img).objectFit,
                     img.naturalWidth / img.naturalHeight];
           })""",
    )
    for (frame, fit, natural), n in zip(shapes, range(29, 5, -1), strict=True):
        width, height = SHAPES[n % len(SHAPES)]
        assert fit == "contain", "a thumbnail is never cropped"
        assert natural == pytest.approx(width / height, rel=0.02)
        assert frame == pytest.approx(min(3, max(0.5, width / height)), rel=0.03)
    heights = await page.eval_on_selector_all(
        "#gallery .caption-by", "els => els.map((e) => e.getBoundingClientRect().height)"
    )
    assert max(heights) < 20, f"a caption's 'who · when' wrapped: {heights}"

    # Older photos, by keyboard: Tab to the link, Enter; they load in place.
    await tab_to(page, "#gallery-more")
    await page.keyboard.press("Enter")
    await page.wait_for_function("() => document.querySelectorAll('#gallery .tile').length === 30")
    assert await titles(page) == [f"Photo {n}" for n in range(29, -1, -1)]
    assert await page.locator("#gallery-more").count() == 0  # nothing older
    # The focus went to the first photo loaded; Enter opens its page.
    focused = await page.evaluate("document.activeElement.getAttribute('href')")
    assert focused == f"/photos/{photos[5]['id']}"
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{pipeline.url}/photos/{photos[5]['id']}")

    # The photo's page: full size, title, who, when, sizes.
    assert await page.text_content("#photo-title") == "Photo 5"
    assert await page.text_content("#photo-by") == "Ada Lovelace"
    created = [
        a for a in pipeline.probe.on("events/image/created") if a["object"]["name"] == "Photo 5"
    ]
    assert await page.get_attribute("#photo-when", "datetime") == created[0]["published"]
    assert (await page.text_content("#photo-when") or "").strip()
    kb = max(1, round(len(photos[5]["bytes"]) / 1024))
    assert (
        await page.text_content("#photo-size")
        == f"{SHAPES[0][0]} × {SHAPES[0][1]} px · JPEG · {kb} KB"
    )
    thumbs = await page.locator("#photo-thumbs a").all_text_contents()
    assert thumbs == ["128 px", "512 px"]
    full = await page.eval_on_selector("#full-size", "img => [img.complete, img.naturalWidth]")
    assert full == [True, SHAPES[0][0]]
    # The arrow keys go to the older and the newer photo.
    await page.keyboard.press("ArrowRight")
    await page.wait_for_url(f"{pipeline.url}/photos/{photos[4]['id']}")
    await page.keyboard.press("ArrowLeft")
    await page.wait_for_url(f"{pipeline.url}/photos/{photos[5]['id']}")

    # /photos pages without a script, 24 at a time.
    await page.goto(f"{pipeline.url}/photos")
    assert len(await titles(page)) == 24
    await tab_to(page, "#older")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{pipeline.url}/photos?before={photos[6]['id']}")
    assert await titles(page) == [f"Photo {n}" for n in range(5, -1, -1)]
    assert await page.locator("#older").count() == 0

    # The same pages for scripts, AS2, with `next` while older ones remain.
    async with aiohttp.ClientSession() as http:
        seen, next_url = [], f"{pipeline.url}/api/images?limit=12"
        while next_url:
            async with http.get(next_url) as r:
                body = await r.json()
            seen += [i["name"] for i in body["orderedItems"]]
            next_url = body.get("next")
        assert seen == [f"Photo {n}" for n in range(29, -1, -1)]
        async with http.get(f"{pipeline.url}/api/images?before=nope.") as r:
            assert r.status == 400
        async with http.get(f"{pipeline.url}/api/images?before={'0' * 32}") as r:
            assert r.status == 404


async def test_a_photo_arriving_live_goes_first_and_keeps_the_older_ones_loaded(
    pipeline: Pipeline, browser: Any
) -> None:
    await upload_all(pipeline, 26)
    page = await open_as(browser, pipeline.url, "grace")
    await page.set_viewport_size(PHONE)
    await page.click("#gallery-more")
    await page.wait_for_function("() => document.querySelectorAll('#gallery .tile').length === 26")
    await upload_all(pipeline, 1)  # a new "Photo 0"
    await page.wait_for_function("() => document.querySelectorAll('#gallery .tile').length === 27")
    assert (await titles(page))[:2] == ["Photo 0", "Photo 25"]


async def test_a_photo_pushing_the_24th_off_the_page_leaves_it_one_click_away(
    pipeline: Pipeline, browser: Any
) -> None:
    await upload_all(pipeline, 24)
    page = await open_as(browser, pipeline.url, "grace")
    assert await page.locator("#gallery-more").count() == 0  # 24: all of them are here
    await upload_all(pipeline, 1)  # a 25th: the oldest leaves the page, not the gallery
    await page.wait_for_function(
        "() => document.querySelector('#gallery .caption-title')"
        ".textContent === 'Photo 0' && document.querySelectorAll("
        "'#gallery .tile').length === 24"
    )
    await page.click("#gallery-more")
    await page.wait_for_function("() => document.querySelectorAll('#gallery .tile').length === 25")
    assert (await titles(page))[-2:] == ["Photo 1", "Photo 0"]


async def test_a_sideways_jpeg_is_shown_upright_by_its_kept_orientation(
    pipeline: Pipeline, browser: Any
) -> None:
    """Issue 21: a JPEG's original is stored as its pixels came, with an EXIF block that
    says only its orientation, rather than decoded and turned; chromium turns it by it,
    the photo's page and the tile alike (red on top, as the camera held it)."""
    token = await pipeline.api_token("ada")
    form = aiohttp.FormData()
    sideways = imagefiles.marked(400, 200)  # stored 400x200, left red; orientation 6
    form.add_field("file", sideways, filename="upright.jpg", content_type="image/jpeg")
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.post(f"{pipeline.url}/api/images", data=form) as r,
    ):
        assert r.status == 201, await r.text()
        image_id = (await r.json())["id"]
    await pipeline.probe.wait_for("events/image/resized")
    page = await open_as(browser, pipeline.url, "grace")
    tile = page.locator("#gallery .tile.resized .frame img")
    await tile.wait_for()
    assert await tile.evaluate("img => img.naturalWidth / img.naturalHeight") == 0.5
    await page.goto(f"{pipeline.url}/photos/{image_id}")
    full = page.locator("#full-size")
    await page.wait_for_function("() => document.querySelector('#full-size').complete")
    assert await full.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [200, 400]
    assert (await page.text_content("#photo-size") or "").startswith("200 × 400 px")
    shown = Image.open(io.BytesIO(await full.screenshot())).convert("RGB")
    top = shown.getpixel((shown.width // 2, shown.height // 10))
    bottom = shown.getpixel((shown.width // 2, shown.height * 9 // 10))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60, f"the top should be red, is {top}"
    assert bottom[2] > 200 and bottom[0] < 60, f"the bottom should be blue, is {bottom}"
