"""Hostile text everywhere a person or a service can put it, shown in the real browser.

Display names (typed at sign-up), an upload's file name and title, and activities published
straight on the bus all carry markup meant to run; the page must show each as text, run nothing,
open no dialog and grow no element the dashboard did not make itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dovecote import activity as act
from dovecote_testing.plugin import Probe, StartService
from tests import imagefiles
from tests.fixtures import joined, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.brokers("mosquitto")]

MALLORY = '<img src=x onerror="window.__xss=1">'
EVE = "</script><script>window.__xss=2</script>"
FILE_TITLE = "<img src=x onerror=window.__xss=3>"  # no title typed: the file name is it
TYPED_TITLE = '<svg onload="window.__xss=4"></svg>{{7*7}}'
BUS_SUMMARY = '<iframe srcdoc="<script>parent.__xss=5</script>"></iframe>'
BUS_NAME = '<a href="javascript:window.__xss=6">click</a>'
PASSWORD = "hostile but long enough"
SERVICES = ("builder", "resizer", "notifier", "points", "tweeter", "gateway")

# Installed before any page script: records what a payload that ran, or tried to, would do.
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""

# Everything on the page that the dashboard did not make itself.
INTRUDERS = """() => {
  const origin = location.origin;
  const out = [];
  for (const e of document.querySelectorAll("*")) {
    for (const a of e.attributes) if (a.name.startsWith("on")) out.push(`${e.tagName} ${a.name}`);
  }
  for (const e of document.querySelectorAll("iframe, object, embed, svg, base, style, frame"))
    out.push(e.tagName);
  const avatar = new RegExp("^/users/[a-z0-9_-]+/avatar[.]svg$");
  for (const e of document.querySelectorAll("img")) {
    const u = new URL(e.src);
    if (u.origin !== origin || !(u.pathname.startsWith("/images/") || avatar.test(u.pathname)))
      out.push(`img ${e.src}`);
  }
  const pages = ["/", "/account", "/signin", "/signup", "/photos"];
  const photo = new RegExp("^/photos/[0-9a-f]{32}$");
  for (const e of document.querySelectorAll("a")) {
    const u = new URL(e.href);
    const path = u.pathname;
    const ours = path.startsWith("/images/") || pages.includes(path) || photo.test(path);
    if (u.origin !== origin || !ours) out.push(`a ${e.href}`);
  }
  const scripts = [...document.scripts].map((s) => s.src ? "src" : s.type).join();
  const json = "application/json";
  // tables.js (every page, first), the page's JSON data, then its own scripts.
  if (scripts !== `src,${json},${json},${json},src,src,src,src` && scripts !== "src,src") {
    out.push(scripts);
  }
  return out;
}"""


async def sign_up(
    browser: Any, url: str, user: str, name: str, dialogs: list[str]
) -> tuple[Any, str]:
    """A person signs up with ``name`` as typed; their page, and its HTML as served."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(WATCH)
    page = await context.new_page()

    async def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    await page.goto(f"{url}/signup")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#signup-button")
    await page.wait_for_url(f"{url}/")
    await page.wait_for_selector("#connection.pill-ok")
    served = await page.request.get(f"{url}/")
    return page, await served.text()


async def follow(page: Any, person: str) -> None:
    await page.click(f"button[data-follow='{person}']")
    await page.wait_for_selector(f"button[data-follow='{person}'][aria-pressed='true']")


async def texts(page: Any, selector: str) -> list[str]:
    return [t or "" for t in await page.locator(selector).all_text_contents()]


async def assert_nothing_ran(page: Any) -> None:
    assert await page.evaluate("window.__xss") is None
    assert await page.evaluate("window.__violations") == [], "a payload tried to run"
    assert await page.evaluate(INTRUDERS) == []
    assert await page.title() == "Dovecote — live"


async def test_hostile_names_titles_and_bus_activities_show_as_text(
    start_service: StartService,
    service_env: dict[str, str],
    probe: Probe,
    browser: Any,
    tmp_path: Path,
) -> None:
    env = {
        "DOVECOTE_SERVICE_TOKEN": "test-token-xss",
        "BUILD_TICK_SECONDS": "0.05",
    }
    for name in SERVICES:
        start_service(name, **env)
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz")
    for name in SERVICES:
        await joined(probe, name)

    dialogs: list[str] = []
    mallory, _ = await sign_up(browser, url, "mallory", MALLORY, dialogs)
    eve, html = await sign_up(browser, url, "eve", EVE, dialogs)
    await eve.reload()  # now it lists Mallory, who signed up first
    await follow(eve, "mallory")
    await mallory.reload()
    await mallory.wait_for_selector("#connection.pill-ok")
    await follow(mallory, "eve")
    # Server-rendered: escaped in the HTML itself, shown literally.
    assert MALLORY not in html and EVE not in html
    assert await mallory.text_content("#me-name") == MALLORY
    assert await mallory.text_content("#upload-button") == f"Upload as {MALLORY}"
    assert EVE in await texts(mallory, "#people .person-name")
    assert MALLORY in await texts(eve, "#people .person-name")

    # Mallory uploads a file whose name is markup (a JPEG that is an HTML page as well);
    # Eve types markup as the title.
    jpeg, polyglot = imagefiles.photo(640, 480), imagefiles.jpeg_with_html(640, 480)
    await mallory.set_input_files(
        "#upload-file",
        files=[{"name": f"{FILE_TITLE}.jpg", "mimeType": "text/html", "buffer": polyglot}],
    )
    await mallory.click("#upload-button")
    await probe.wait_for("events/image/resized")
    await eve.set_input_files(
        "#upload-file", files=[{"name": "cat.jpg", "mimeType": "image/jpeg", "buffer": jpeg}]
    )
    await eve.fill("#upload-title", TYPED_TITLE)
    await eve.click("#upload-button")
    await mallory.click("#start")  # a build in Mallory's name: history, notifications, points
    await probe.wait_for("events/image/resized", count=2, timeout=30)
    await probe.wait_for("events/tweet/created", count=2)
    await probe.wait_for("events/points/awarded", count=3, timeout=30)
    for page in (mallory, eve):
        await page.wait_for_selector("#gallery .tile.resized >> nth=1", timeout=15_000)
        assert set(await texts(page, "#gallery .caption-title")) == {FILE_TITLE, TYPED_TITLE}
        by = " ".join(await texts(page, "#gallery .caption-by"))
        assert MALLORY in by and EVE in by
        await page.wait_for_selector("#history tr:not(.empty)")
        assert MALLORY in (await page.text_content("#history") or "")
        await page.wait_for_function(
            "n => document.querySelectorAll('#leaderboard .leader').length === n", arg=2
        )
        assert set(await texts(page, "#leaderboard .leader-name")) == {MALLORY, EVE}
        feed = await page.text_content("#feed") or ""
        assert FILE_TITLE in feed and TYPED_TITLE in feed and MALLORY in feed  # the tweets
    await eve.wait_for_selector("#notifications .note-item >> nth=1", timeout=15_000)
    notes = " ".join(await texts(eve, "#notifications .note-text"))
    assert f"{MALLORY} shared a photo: “{FILE_TITLE}”" in notes
    assert f"{MALLORY}’s Build #" in notes

    # Straight on the bus, past every service: a notification and a leaderboard.
    [real] = probe.on("users/eve/notifications")[:1]
    probe.publish("users/eve/notifications", real | {"id": act.new_id(), "summary": BUS_SUMMARY})
    board = probe.on("state/leaderboard")[-1]
    board["id"] = act.new_id()
    board["object"]["orderedItems"][0]["name"] = BUS_NAME
    probe.publish("state/leaderboard", board, retain=True)
    await eve.wait_for_function(
        "t => [...document.querySelectorAll('#notifications .note-text')]"
        ".some((e) => e.textContent === t)",
        arg=BUS_SUMMARY,
    )
    for page in (mallory, eve):
        await page.wait_for_function(
            "t => [...document.querySelectorAll('#leaderboard .leader-name')]"
            ".some((e) => e.textContent === t)",
            arg=BUS_NAME,
        )

    # A page opened now gets all of it from the server: gallery and snapshot in JSON
    # inside <script> elements, where a "</script>" must not end them.
    trent, html = await sign_up(browser, url, "trent", "Trent", dialogs)
    assert EVE not in html and BUS_NAME not in html and FILE_TITLE not in html
    await trent.wait_for_selector("#gallery .tile.resized >> nth=1")
    by = " ".join(await texts(trent, "#gallery .caption-by"))
    assert MALLORY in by and EVE in by
    assert BUS_NAME in await texts(trent, "#leaderboard .leader-name")

    for page in (mallory, eve, trent):
        await assert_nothing_ran(page)

    # The polyglot opened on its own is shown as the image it is; its HTML never runs.
    original = probe.on("events/image/created")[0]["object"]["url"]
    response = await trent.goto(original)
    assert response.headers["content-type"] == "image/jpeg"
    assert await trent.evaluate("window.__xss") is None
    assert await trent.locator("script").count() == 0
    assert dialogs == []
