"""The image pipeline as real processes on a real broker: upload -> resizer, notifier, points."""

from __future__ import annotations

import asyncio
import io
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import websockets
from PIL import Image
from yarl import URL

from dovecote import activity as act
from dovecote_testing.gateway import cookie_header
from dovecote_testing.plugin import ServiceProcess, wait_until
from tests import imagefiles
from tests.chaos import FaultRow, record
from tests.fixtures import Pipeline, joined
from tests.test_gateway_process import Browserish, gateway_sees

pytestmark = pytest.mark.slow


async def upload(
    p: Pipeline,
    data: bytes,
    *,
    user: str = "ada",
    title: str | None = None,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename=filename, content_type=content_type)
    if title is not None:
        form.add_field("title", title)
    async with (
        await p.signed_in(user) as http,
        http.post(f"{p.url}/api/images", data=form, headers=headers) as r,
    ):
        return r.status, await r.text()


async def fetch(url: str | URL, **kwargs: Any) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as http, http.request("GET", url, **kwargs) as r:
        return r.status, r.content_type, await r.read()


def logged(service: ServiceProcess, text: str) -> Callable[[], bool]:
    return lambda: text in service.log


def for_image(url: str) -> Any:
    return lambda a: a["object"]["id"] == url


async def test_an_upload_travels_through_every_service_with_one_context(
    pipeline: Pipeline,
) -> None:
    p, probe = pipeline, pipeline.probe
    # Stored sideways (shown portrait), where it was taken in its EXIF, and big enough to
    # arrive in many chunks.
    original = imagefiles.photo(1600, 1200, orientation=6, grain=True, gps=True)
    assert len(original) > 300_000
    status, body = await upload(p, original, title=" Ada’s\tcat <b>\u202e", filename="../x.jpg")
    assert status == 201, body
    up = orjson.loads(body)
    url, context = up["url"], up["context"]

    [created] = await probe.wait_for("events/image/created", for_image(url))
    assert created["context"] == context and created["id"] == up["activity"]
    assert created["actor"]["preferredUsername"] == "ada"
    image = created["object"]
    # Described as it is shown (portrait: its orientation says so), without its location.
    assert (image["mediaType"], image["width"], image["height"]) == ("image/jpeg", 1200, 1600)
    assert image["name"] == "Ada’s cat <b>"  # text, sanitised; never a file name

    [resized] = await probe.wait_for("events/image/resized", for_image(url))
    assert resized["context"] == context
    previews = resized["object"]["preview"]
    assert [(t["width"], t["height"]) for t in previews] == [(96, 128), (384, 512)]
    for t in previews:
        status, ctype, data = await fetch(t["href"])
        assert (status, ctype) == (200, "image/jpeg")
        assert Image.open(io.BytesIO(data)).size == (t["width"], t["height"])
    status, ctype, stored = await fetch(url)
    assert (status, ctype, len(stored)) == (200, "image/jpeg", image["size"])
    kept = Image.open(io.BytesIO(stored))
    # Its pixels as uploaded (sideways), and the one EXIF field that says how to show them.
    assert kept.size == (1600, 1200) and dict(kept.getexif()) == {0x0112: 6}
    assert kept.tobytes() == Image.open(io.BytesIO(original)).tobytes()
    for gone in (b"GPSLatitude", b"SN-123456", b"Ada L.", b"Dovecam", b"2026:11:29"):
        assert gone in original and gone not in stored, gone  # where, who, which camera, when

    # Ada's followers (Grace, Linus) hear of it on their own topics; Ada does not.
    for follower in ("grace", "linus"):
        [note] = await probe.wait_for(f"users/{follower}/notifications")
        assert note["context"] == context and "shared a photo" in note["summary"]
        assert note["to"] == [p.users_url(follower)]
    [award] = await probe.wait_for("events/points/awarded")
    assert award["context"] == context
    assert (award["target"]["preferredUsername"], award["object"]["points"]) == ("ada", 10)
    [board] = await probe.wait_for(
        "state/leaderboard", lambda a: a["object"]["totalItems"] == 1, count=1
    )
    assert board["object"]["orderedItems"][0]["points"] == 10
    assert not probe.on("users/ada/notifications")

    # One correlation id, in every service's log lines.
    for name in ("gateway", "resizer", "notifier", "points"):
        await wait_until(logged(p.services[name], context), 10, f"{name} logging {context}")
        assert "WARNING" not in p.services[name].log  # no retry: it worked the first time


@pytest.mark.brokers("mosquitto")  # the gateway's checks of an upload: the broker is not the point
async def test_bad_uploads_get_a_4xx_and_nothing_is_stored_or_published(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    over_limit = os.urandom(2 * 1024 * 1024 + 1)
    cases: list[tuple[bytes, dict[str, Any], int, str]] = [
        (b"#!/bin/sh\necho hi\n", {}, 415, "not an image"),
        (imagefiles.truncated(), {}, 400, "truncated"),
        (imagefiles.bomb(), {}, 413, "decompression bomb"),
        (imagefiles.bomb(8000, 8000), {}, 413, "decompression bomb"),
        (over_limit, {}, 413, "limited to"),
        (b"", {}, 400, "empty"),
        (imagefiles.photo(), {"filename": "../../../etc/passwd"}, 201, ""),  # name ignored
        (imagefiles.photo(), {"headers": {"Origin": "http://evil.example"}}, 403, "cross-origin"),
    ]
    for data, kwargs, want, reason in cases:
        status, text = await upload(p, data, **kwargs)
        assert (status, reason in text) == (want, True), (want, reason, text[:200])
    async with await p.signed_in("ada") as http:
        async with http.post(f"{p.url}/api/images", json={"file": "x"}) as r:
            assert r.status == 415 and "multipart/form-data" in await r.text()
        form = aiohttp.FormData()
        form.add_field("picture", b"x", filename="a.jpg")
        async with http.post(f"{p.url}/api/images", data=form) as r:
            assert r.status == 400 and "unknown form field" in await r.text()

    # Only the one good upload was stored and announced, under a generated name.
    await p.probe.wait_for("events/image/created")
    await asyncio.sleep(0.5)
    assert len(p.probe.on("events/image/created")) == 1
    stored = [f.name for f in p.stored_files() if "originals" in f.parts]
    assert len(stored) == 2 and {f.rsplit(".", 1)[1] for f in stored} == {"jpg", "json"}
    assert not any("passwd" in str(f) or ".tmp" in f.name for f in p.stored_files())
    assert p.services["gateway"].alive()


@pytest.mark.brokers("mosquitto")
async def test_uploads_are_judged_by_their_bytes_not_their_name_or_declared_type(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    for what, (data, declared) in imagefiles.polyglots().items():
        status, text = await upload(p, data, filename="x.jpg", content_type=declared)
        assert status in (400, 415), (what, status, text)
        assert "not an image" in text or "damaged" in text, (what, text)
    # A real image that is an HTML page too, declared as HTML: stored and served as the
    # JPEG its bytes are, never as a page that could run in this origin (and its page cut).
    polyglot = imagefiles.jpeg_with_html()
    status, body = await upload(p, polyglot, filename="page.html", content_type="text/html")
    assert status == 201, body
    url = orjson.loads(body)["url"]
    [created] = await p.probe.wait_for("events/image/created")
    assert created["object"]["mediaType"] == "image/jpeg"
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        # Stored without what followed the image's end: the page is gone.
        assert r.content_type == "image/jpeg" and await r.read() == imagefiles.photo(320, 240)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    stored = {f.suffix for f in p.stored_files() if "originals" in f.parts}
    assert stored == {".jpg", ".json"}
    await asyncio.sleep(0.3)
    assert len(p.probe.on("events/image/created")) == 1  # only the real image was announced


@pytest.mark.brokers("mosquitto")  # the gateway's checks of a path: the broker is not the point
async def test_image_resources_refuse_path_tricks_and_unauthenticated_writes(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    status, body = await upload(p, imagefiles.photo(300, 200))
    image_id = orjson.loads(body)["id"]
    await p.probe.wait_for("events/image/resized")
    before = p.stored_files()

    for raw in (
        "/images/..%2F..%2F..%2Fetc%2Fpasswd",
        "/images/%2e%2e",
        "/images/.hidden",
        "/images/ABC",
        f"/images/{image_id}%00.jpg",
        f"/images/{image_id}/thumbnails/..%2F..%2Fsecret",
        f"/images/{image_id}/thumbnails/128.jpg",
    ):
        status, _, data = await fetch(URL(p.url + raw, encoded=True))
        assert status in (400, 404), (raw, status)
        assert b"root:" not in data
    assert (await fetch(f"{p.url}/images/{uuid.uuid4().hex}"))[0] == 404

    thumb = imagefiles.photo(128, 64)
    target = f"{p.url}/images/{image_id}/thumbnails/128"
    good = {"Authorization": f"Bearer {p.token}", "Content-Type": "image/jpeg"}
    async with aiohttp.ClientSession() as http:

        async def put(url: str | URL, data: bytes, headers: dict[str, str]) -> tuple[int, str]:
            async with http.put(url, data=data, headers=headers) as r:
                return r.status, r.headers.get("WWW-Authenticate", "") + await r.text()

        status, text = await put(target, thumb, {"Content-Type": "image/jpeg"})
        assert status == 401 and "Bearer" in text
        status, _ = await put(target, thumb, {**good, "Authorization": "Bearer wrong"})
        assert status == 403
        status, _ = await put(target, thumb, {**good, "Authorization": p.token})  # no scheme
        assert status == 401
        assert (await put(target, b"not an image", good))[0] == 415
        assert (await put(target, imagefiles.photo(300, 300), good))[0] == 400  # > 128 px
        assert (await put(target, thumb, {**good, "Content-Type": "image/png"}))[0] == 415
        unknown = f"{p.url}/images/{uuid.uuid4().hex}/thumbnails/128"
        assert (await put(unknown, thumb, good))[0] == 404
        tricky = URL(f"{p.url}/images/..%2F..%2Ftmp/thumbnails/128", encoded=True)
        assert (await put(tricky, thumb, good))[0] in (400, 404)
        assert p.stored_files() == before  # nothing written by any refused request
        status, _ = await put(target, thumb, good)
        assert status == 201
    assert (await fetch(target))[2] == thumb


async def test_a_bad_image_reaching_the_resizer_is_dead_lettered_and_it_goes_on(
    pipeline: Pipeline,
) -> None:
    p, probe = pipeline, pipeline.probe
    broken_id = uuid.uuid4().hex  # a corrupt file in the store, as a disk error would leave
    (p.images_dir / "originals" / f"{broken_id}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ada = {
        "type": "Person",
        "id": p.users_url("ada"),
        "name": "Ada Lovelace",
        "preferredUsername": "ada",
    }

    def image(url: str) -> dict[str, Any]:
        obj = {"type": "Image", "id": url, "url": url, "mediaType": "image/jpeg", "name": "x"}
        return act.new("Create", ada, {**obj, "width": 10, "height": 10, "size": 10})

    for url in (
        f"{p.url}/images/{broken_id}",
        f"{p.url}/images/{uuid.uuid4().hex}",  # no such image: 404
        "http://evil.example/cat.jpg",  # not the gateway's: never fetched
    ):
        probe.publish("events/image/created", image(url))
    letters = await probe.wait_for("deadletter/resizer", count=3)
    reasons = " | ".join(letter["summary"] for letter in letters)
    for why in ("not an image", "answered 404", "refusing to fetch"):
        assert why in reasons, reasons
    assert all(letter["object"]["attempts"] == 1 for letter in letters)  # no pointless retries

    status, body = await upload(p, imagefiles.photo())
    assert status == 201
    await probe.wait_for("events/image/resized", for_image(orjson.loads(body)["url"]))
    assert p.services["resizer"].alive()


async def test_the_resizer_down_during_uploads_makes_every_thumbnail_when_back(
    pipeline: Pipeline,
) -> None:
    p, probe = pipeline, pipeline.probe
    assert await asyncio.to_thread(p.services["resizer"].stop) == 0
    await probe.wait_for("services/resizer/1", lambda a: a["type"] == "Leave")
    urls = []
    for n in range(3):
        status, body = await upload(p, imagefiles.photo(seed=n), title=f"offline {n}")
        assert status == 201
        urls.append(orjson.loads(body)["url"])
    await probe.wait_for("events/image/created", count=3)
    await asyncio.sleep(1.0)
    assert not probe.on("events/image/resized")  # nobody resized them ...

    p.start("resizer")  # ... until the resizer's persistent session hands them over
    await joined(probe, "resizer", count=2)
    resized = await probe.wait_for("events/image/resized", count=3, timeout=30)
    assert {r["object"]["id"] for r in resized} == set(urls)
    for url in urls:
        assert (await fetch(f"{url}/thumbnails/128"))[0] == 200


async def test_points_are_never_counted_twice_for_a_redelivered_event(
    pipeline: Pipeline,
) -> None:
    p, probe = pipeline, pipeline.probe
    assert (await upload(p, imagefiles.photo()))[0] == 201
    [created] = await probe.wait_for("events/image/created")
    await probe.wait_for("events/points/awarded")

    probe.publish("events/image/created", created)  # the broker delivers it again
    await asyncio.sleep(1.0)
    assert len(probe.on("events/points/awarded")) == 1
    assert await asyncio.to_thread(p.services["points"].stop) == 0
    restarted = p.start("points")  # a fresh process: it has only the ledger to remember
    await joined(probe, "points", count=2)
    probe.publish("events/image/created", created)
    await wait_until(logged(restarted, "upload for ada already counted"), 15, "the skip")
    assert len(probe.on("events/points/awarded")) == 1
    # The restarted service republished the leaderboard from its ledger: still 10.
    boards = probe.on("state/leaderboard")
    assert boards[-1]["object"]["orderedItems"][0]["points"] == 10
    assert p.points_db.exists()


async def test_each_persons_socket_gets_only_their_own_notifications(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    ws = p.url.replace("http://", "ws://") + "/ws"
    people = ("ada", "grace", "linus")
    cookies = {}
    for who in people:
        async with await p.signed_in(who) as http:
            cookies[who] = {"Cookie": cookie_header(http)}
    async with (
        websockets.connect(ws, additional_headers=cookies["ada"]) as a,
        websockets.connect(ws, additional_headers=cookies["grace"]) as g,
        websockets.connect(ws, additional_headers=cookies["linus"]) as li,
    ):
        pages = dict(zip(people, (Browserish(a), Browserish(g), Browserish(li)), strict=True))
        for who, page in pages.items():
            hello = await page.wait(lambda f: f.get("type") == "hello")
            assert hello["user"] == who
        await upload(p, imagefiles.photo(seed=1), user="ada")
        await upload(p, imagefiles.photo(seed=2), user="grace")
        # ada follows grace and linus; grace follows ada; linus follows ada and grace.
        await p.probe.wait_for("users/linus/notifications", count=2)
        await p.probe.wait_for("users/ada/notifications")
        await p.probe.wait_for("users/grace/notifications")
        for who, page in pages.items():
            await page.wait(lambda f, who=who: f.get("topic", "").endswith(f"/{who}/notifications"))
        await asyncio.sleep(0.5)
    root = p.probe.root
    for who, page in pages.items():
        notes = [t for t in page.topics() if "/notifications" in t]
        assert set(notes) == {f"{root}/users/{who}/notifications"}, (who, notes)
    assert len([t for t in pages["linus"].topics() if "/notifications" in t]) == 2


def succeeded(seen: dict[str, Any]) -> bool:
    return bool(seen.get("state/build", {}).get("object", {}).get("state") == "succeeded")


async def test_a_finished_build_notifies_and_a_successful_one_earns_points(
    pipeline: Pipeline,
) -> None:
    p, probe = pipeline, pipeline.probe
    p.start("builder")
    await joined(probe, "builder")
    async with await p.signed_in("grace") as http:
        async with http.post(f"{p.url}/api/builds", json={}) as r:
            assert r.status == 202
        await probe.wait_for("events/build/succeeded")
        # As a person would: Start again once the page shows the build over.
        await gateway_sees(p, succeeded)
        async with http.post(f"{p.url}/api/builds", json={"shouldFail": True}) as r:
            assert r.status == 202
        await probe.wait_for("events/build/failed")
    [own_ok, own_failed] = await probe.wait_for("users/grace/notifications", count=2)
    assert own_ok["summary"].startswith("Your Build #") and own_ok["summary"].endswith("succeeded")
    assert own_failed["summary"].endswith("failed")
    for follower in ("ada", "linus"):  # both follow grace
        notes = await probe.wait_for(f"users/{follower}/notifications", count=2)
        assert all("Grace Hopper’s Build #" in n["summary"] for n in notes)
    [award] = await probe.wait_for("events/points/awarded")
    assert (award["object"]["rule"], award["target"]["preferredUsername"]) == ("build", "grace")
    await asyncio.sleep(0.5)
    assert len(probe.on("events/points/awarded")) == 1  # a failed build earns nothing


def peak_rss_mb(service: ServiceProcess) -> float:
    """The process's high-water resident memory (VmHWM), in MB."""
    assert service.process is not None
    status = Path(f"/proc/{service.process.pid}/status").read_text()
    [kb] = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(kb) / 1024


async def test_a_batch_of_decode_amplifiers_neither_bloats_the_resizer_nor_delays_a_photo(
    pipeline: Pipeline,
) -> None:
    """Issue 11: 20 PNGs of 6300x6300 (131 KB each, 159 MiB decoded) and 4 of 4000x4000
    (61 MiB decoded: allowed, but large) reach the resizer, then one ordinary photo. Before
    the decode budget the resizer decoded them all, two at a time, in arrival order: 985 MB
    and a photo's thumbnail 5.3 s late. Now the 20 are refused from their headers, the 4
    wait for the one heavy lane, and the photo has lanes of its own: its thumbnail comes
    within 1 s and the resizer stays under 300 MB."""
    p, probe = pipeline, pipeline.probe
    ada = {"type": "Person", "id": p.users_url("ada"), "name": "Ada Lovelace"}

    def stored(data: bytes, ext: str, width: int, height: int) -> dict[str, Any]:
        """Put an original in the gateway's store as an upload would, and its Create."""
        image_id = uuid.uuid4().hex
        (p.images_dir / "originals" / f"{image_id}.{ext}").write_bytes(data)
        url = f"{p.url}/images/{image_id}"
        media = "image/png" if ext == "png" else "image/jpeg"
        obj: dict[str, Any] = {"type": "Image", "id": url, "url": url, "mediaType": media}
        obj |= {"name": "x", "width": width, "height": height, "size": len(data)}
        return act.new("Create", ada, obj)

    hostile = imagefiles.heavy_png(6300)
    large = imagefiles.heavy_png(4000)
    batch = [stored(hostile, "png", 6300, 6300) for _ in range(20)]
    batch += [stored(large, "png", 4000, 4000) for _ in range(4)]
    photo = stored(imagefiles.photo(1600, 1200, grain=True), "jpg", 1600, 1200)
    for created in batch:
        probe.publish("events/image/created", created)
    sent = time.monotonic()
    probe.publish("events/image/created", photo)
    await probe.wait_for("events/image/resized", for_image(photo["object"]["id"]), timeout=30)
    latency = time.monotonic() - sent

    letters = await probe.wait_for("deadletter/resizer", count=20, timeout=30)
    assert all("IMAGE_MAX_DECODED_BYTES" in letter["summary"] for letter in letters)
    await probe.wait_for("events/image/resized", count=5, timeout=60)  # the 4 large, too
    await asyncio.sleep(0.5)  # a second answer to any of them would come right behind
    answered = [a["object"]["id"] for a in probe.on("events/image/resized")]
    answered += [orjson.loads(letter["object"]["content"])["object"]["id"] for letter in letters]
    expected = {c["object"]["id"] for c in [*batch, photo]}
    record(
        FaultRow(
            "20 decode amplifiers and 4 large PNGs ahead of a photo (resized or refused)",
            len(expected),
            len(set(answered) & expected),
            len(expected - set(answered)),
            len(answered) - len(set(answered)),
        )
    )
    rss = peak_rss_mb(p.services["resizer"])
    print(f"photo's thumbnail after {latency * 1000:.0f} ms; resizer peak RSS {rss:.0f} MB")
    assert latency <= 1.0, f"the photo's thumbnail took {latency:.2f} s"
    assert rss <= 300, f"the resizer peaked at {rss:.0f} MB"
