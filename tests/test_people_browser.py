"""Real people in Debian's headless chromium: accounts, follows, the inbox, and the edge.

Every person has a browser context of their own (their own cookies), as two people's
browsers would be; the services run as real processes on a real broker.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from dovecote import activity as act
from dovecote.tools.broker import free_port
from tests import imagefiles
from tests.fixtures import CHROMIUM, CHROMIUM_ARGS, Pipeline, open_as

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def sign_up(browser: Any, url: str, username: str, name: str, password: str) -> Any:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{url}/")
    await page.click("#signup-link")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("#signup-button")
    await page.wait_for_url(f"{url}/")
    await page.wait_for_selector("#connection.pill-ok")
    return page


async def badge(page: Any) -> str | None:
    """The unread count the page shows, or None when the badge is hidden."""
    count = page.locator("#notes-count")
    return None if await count.get_attribute("hidden") is not None else await count.text_content()


async def upload(page: Any, title: str, seed: int) -> None:
    photo = {"name": "p.jpg", "mimeType": "image/jpeg", "buffer": imagefiles.photo(seed=seed)}
    await page.set_input_files("#upload-file", files=[photo])
    await page.fill("#upload-title", title)
    await page.click("#upload-button")


async def test_sign_up_upload_a_follower_elsewhere_is_told_a_reload_keeps_it_mark_read_clears(
    pipeline: Pipeline, browser: Any
) -> None:
    p, probe = pipeline, pipeline.probe
    kim = await sign_up(browser, p.url, "kim", "Kim Lee", "correct horse battery")
    assert await kim.text_content("#me-name") == "Kim Lee"
    grace = await open_as(browser, p.url, "grace")  # signed in elsewhere

    # Grace follows Kim from her page: stored (the directory says so) and published.
    button = grace.locator("button[data-follow='kim']")
    assert await button.text_content() == "Follow"
    await button.click()
    await grace.wait_for_selector("button[data-follow='kim'][aria-pressed='true']")
    [followed] = await probe.wait_for("events/people/followed")
    assert followed["type"] == "Follow"
    assert (followed["actor"]["preferredUsername"], followed["object"]["preferredUsername"]) == (
        "grace",
        "kim",
    )
    # Kim hears of it: the notifier's notification, live in Kim's inbox.
    note = await kim.wait_for_selector("#notifications .note-item", timeout=15_000)
    assert "Grace Hopper followed you" in (await note.text_content() or "")

    # Kim uploads; Grace's page gets the notification live, and her badge counts it.
    await upload(kim, "Kim's first", seed=3)
    note = await grace.wait_for_selector("#notifications .note-item.unread", timeout=20_000)
    assert "Kim Lee shared a photo: “Kim's first”" in (await note.text_content() or "")
    assert await badge(grace) == "1"

    # A reload keeps it: drawn by the server from the notifier's inbox (the socket is
    # blocked, so nothing live can bring it back).
    await grace.route("**/ws*", lambda route: route.abort())
    await grace.reload()
    assert "Kim Lee shared a photo" in (await grace.text_content("#notifications") or "")
    assert await grace.locator("#notifications .note-item.unread").count() == 1
    assert await badge(grace) == "1"
    await grace.unroute("**/ws*")
    await grace.reload()
    await grace.wait_for_selector("#connection.pill-ok")

    # Mark all read: the notifier marks it, every page of Grace's clears its badge.
    other_tab = await grace.context.new_page()
    await other_tab.goto(f"{p.url}/")
    await other_tab.wait_for_selector("#connection.pill-ok")
    assert await badge(other_tab) == "1"
    await grace.click("#mark-read")
    for page in (grace, other_tab):
        await page.wait_for_selector("#notes-count[hidden]", state="attached", timeout=10_000)
    await probe.wait_for("users/grace/inbox", lambda a: a["object"]["unread"] == 0)
    await grace.reload()
    await grace.wait_for_selector("#connection.pill-ok")
    assert await badge(grace) is None
    assert await grace.locator("#notifications .note-item").count() == 1  # kept, read
    assert await grace.locator("#notifications .note-item.unread").count() == 0

    # Unfollowed, Grace hears of Kim's next photo no more; Linus, who follows Kim now, does.
    await grace.click("button[data-follow='kim']")
    await grace.wait_for_selector("button[data-follow='kim'][aria-pressed='false']")
    await probe.wait_for("events/people/unfollowed")
    linus = await open_as(browser, p.url, "linus")
    await linus.click("button[data-follow='kim']")
    await linus.wait_for_selector("button[data-follow='kim'][aria-pressed='true']")
    await upload(kim, "Kim's second", seed=4)
    await linus.wait_for_selector("#notifications .note-item:has-text('Kim\\'s second')")
    await asyncio.sleep(0.5)
    grace_notes = [n["summary"] for n in probe.on("users/grace/notifications")]
    assert grace_notes == ["Kim Lee shared a photo: “Kim's first”"]
    assert await badge(grace) is None


async def test_a_signed_out_page_gets_no_socket_that_carries_notifications(
    pipeline: Pipeline, browser: Any
) -> None:
    p = pipeline
    ada = await open_as(browser, p.url, "ada")
    stranger = await (await browser.new_context()).new_page()
    frames: list[str] = []
    stranger.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(str(f))))
    await stranger.goto(f"{p.url}/")
    await stranger.wait_for_selector("#connection.pill-ok")
    assert await stranger.locator("#inbox").count() == 0  # no inbox drawn either
    assert await stranger.get_attribute("body", "data-user") == ""
    # Its own socket, and one it opens asking to be Ada: neither is anyone's.
    asked = await stranger.evaluate(
        """() => new Promise((resolve) => {
             const got = [];
             const ws = new WebSocket(`ws://${location.host}/ws?as=ada`);
             ws.onmessage = (e) => got.push(e.data);
             window.__asked = got;
             ws.onopen = () => resolve(true);
             ws.onerror = () => resolve(false);
           })"""
    )
    assert asked is True
    grace = {"type": "Person", "id": p.users_url("grace"), "name": "Grace Hopper"}
    about = {"type": "Create", "id": act.new_id(), "actor": grace, "object": {"type": "Note"}}
    secret = act.new("Announce", grace, about, summary="for Ada only", to=[p.users_url("ada")])
    p.probe.publish("users/ada/notifications", secret)
    await ada.wait_for_selector("#notifications .note-item:has-text('for Ada only')")
    tick = act.new("Create", grace, {"type": "Note", "content": "after"})
    p.probe.publish("events/test/tick", tick)  # a frame for everyone, after the secret
    await stranger.wait_for_function(
        "() => window.__asked.some((f) => f.includes('events/test/tick'))"
    )
    await asyncio.sleep(0.2)
    # Every frame of both sockets (the page's listener sees each socket the page opens).
    assert sum("events/test/tick" in f for f in frames) == 2  # both were live
    assert not [f for f in frames if "/notifications" in f or "for Ada only" in f]
    hellos = [orjson.loads(f) for f in frames if '"type":"hello"' in f]
    assert len(hellos) == 2 and all(h["user"] is None for h in hellos)


@pytest.fixture
async def evil_site() -> AsyncIterator[tuple[str, dict[str, str]]]:
    """An attacker's page on another port of the same host: the same *site* as the
    gateway (SameSite=Lax sends the session cookie along), another *origin*."""
    pages: dict[str, str] = {}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=pages[request.path], content_type="text/html")

    app = web.Application()
    app.router.add_get("/{page}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", pages
    await runner.cleanup()


@pytest.mark.brokers("mosquitto")  # Host, Origin and CSRF checks: the broker is not the point
async def test_a_foreign_host_and_a_csrf_less_post_are_refused(
    pipeline: Pipeline, browser: Any, evil_site: tuple[str, dict[str, str]]
) -> None:
    p, probe = pipeline, pipeline.probe
    port = p.url.rsplit(":", 1)[1]

    # DNS rebinding: evil.example now resolves to this machine; its page asks the gateway.
    from playwright.async_api import async_playwright

    assert shutil.which(CHROMIUM)
    rules = "--host-resolver-rules=MAP evil.example 127.0.0.1"
    async with async_playwright() as pw:
        rebound = await pw.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, rules], headless=True
        )
        page = await rebound.new_page()
        response = await page.goto(f"http://evil.example:{port}/")
        assert response is not None and response.status == 421
        assert "PUBLIC_URL" in (await page.text_content("body") or "")
        statuses = await page.evaluate(
            """async () => [
                 (await fetch("/users/ada")).status,
                 (await fetch("/api/builds", {method: "POST", body: "{}",
                    headers: {"Content-Type": "application/json"}})).status,
                 await new Promise((resolve) => {
                   const ws = new WebSocket(`ws://${location.host}/ws`);
                   ws.onopen = () => resolve("open");
                   ws.onerror = () => resolve("refused");
                 }),
               ]"""
        )
        assert statuses == [421, 421, "refused"]
        await rebound.close()

    # CSRF: Grace is signed in; another origin's page posts with her cookie.
    grace = await open_as(browser, p.url, "grace")
    evil, pages = evil_site
    pages["/upload"] = f"""<!doctype html><script>
      const png = Uint8Array.from(atob("{imagefiles_png()}"), (c) => c.charCodeAt(0));
      const form = new FormData();
      form.append("file", new Blob([png], {{type: "image/png"}}), "x.png");
      fetch("{p.url}/api/images", {{method: "POST", mode: "no-cors", credentials: "include",
                                     body: form}}).then(() => document.title = "sent");
    </script>"""
    pages["/signout"] = f"""<!doctype html><form id=f method=post action="{p.url}/signout">
      </form><script>document.getElementById("f").submit();</script>"""
    attack = await grace.context.new_page()
    await attack.goto(f"{evil}/upload")
    await attack.wait_for_function("document.title === 'sent'")
    await attack.goto(f"{evil}/signout")
    await attack.wait_for_url(f"{p.url}/signout")
    body = await attack.text_content("body")
    assert "cross-origin request refused" in (body or ""), body
    # Playwright's own request: Grace's cookie, no Origin and no token; then with the token.
    csrf = await grace.get_attribute('meta[name="csrf-token"]', "content")
    json_type = {"Content-Type": "application/json"}
    bare = await grace.request.post(f"{p.url}/api/builds", data="{}", headers=json_type)
    assert bare.status == 403 and "CSRF" in await bare.text()
    with_token = await grace.request.post(
        f"{p.url}/api/builds",
        data="{}",
        headers={**json_type, "X-CSRF-Token": csrf or ""},
    )
    assert with_token.status == 202
    [start] = await probe.wait_for("commands/builder/start")
    assert start["actor"]["preferredUsername"] == "grace"
    await grace.reload()
    assert await grace.get_attribute("body", "data-user") == "grace"  # still signed in
    await asyncio.sleep(0.3)
    assert not probe.on("events/image/created")  # the cross-origin upload stored nothing
    assert not [f for f in p.stored_files() if "originals" in f.parts]


def imagefiles_png() -> str:
    import base64

    return base64.b64encode(imagefiles.photo(16, 12, fmt="PNG")).decode()
