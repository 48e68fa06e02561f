"""Tests of the tweeter: its pure helpers, its handler on the in-memory bus (`make check`),
then the service as a real process on a real broker, then end to end: real uploads through
the gateway's HTTP endpoint, the tweets on the bus and in the frames the dashboard's live
feed receives.

``memory_bus``, ``start_service`` and ``probe`` come from the project's pytest plugin
(shared/dovecote_testing/plugin.py).
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import orjson
from PIL import Image as Picture

from dovecote import activity as act
from dovecote_testing.gateway import token_for
from dovecote_testing.plugin import MemoryBus, Probe, StartService
from services.gateway import topics as gateway_topics
from services.tweeter.service import Tweeter, tweet_id, tweet_text

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada Lovelace"}


def image(name: str = "Sunset", **fields: Any) -> dict[str, Any]:
    return {
        "type": "Image",
        "id": "http://localhost:8080/images/7f3a",
        "url": "http://localhost:8080/images/7f3a",
        "mediaType": "image/png",
        "name": name,
        "width": 640,
        "height": 480,
        "size": 1234,
        **fields,
    }


def test_the_text_says_who_shared_what() -> None:
    text = tweet_text(msgspec.convert(image(), gateway_topics.Image), "Ada Lovelace")
    assert text == "Ada Lovelace shared “Sunset” (640×480) http://localhost:8080/images/7f3a"


def test_a_long_title_is_cut_so_the_tweet_fits_280_characters() -> None:
    text = tweet_text(msgspec.convert(image("x" * 200), gateway_topics.Image), "Ada Lovelace " * 5)
    assert len(text) == 280
    assert text.endswith("…” (640×480) http://localhost:8080/images/7f3a")


def test_one_image_always_makes_the_same_tweet_id() -> None:
    assert tweet_id("http://h/images/1") == tweet_id("http://h/images/1")
    assert tweet_id("http://h/images/1") != tweet_id("http://h/images/2")


async def test_each_upload_is_tweeted_once_on_the_in_memory_bus(memory_bus: MemoryBus) -> None:
    await memory_bus.start(Tweeter)  # a real worker: decoding, dedupe, acks; no broker
    created = act.new("Create", ADA, image(attributedTo=ADA), context="urn:uuid:c0ffee")
    memory_bus.probe.publish("events/image/created", created)
    memory_bus.probe.publish("events/image/created", created)  # redelivered: skipped
    other = act.new("Create", ADA, image("Cat", id="http://localhost:8080/images/9b1c"))
    memory_bus.probe.publish("events/image/created", other)
    first, second = await memory_bus.probe.wait_for("events/tweet/created", count=2)
    assert first["object"]["inReplyTo"] == created["id"]
    assert first["context"] == "urn:uuid:c0ffee"
    assert second["object"]["inReplyTo"] == other["id"]


async def test_an_image_created_event_gets_a_tweet(
    start_service: StartService, probe: Probe
) -> None:
    start_service("tweeter")
    await probe.wait_online("tweeter")
    created = act.new("Create", ADA, image(attributedTo=ADA), context="urn:uuid:c0ffee")
    probe.publish("events/image/created", created)
    [tweet] = await probe.wait_for("events/tweet/created")
    assert tweet["object"]["inReplyTo"] == created["id"]
    assert tweet["object"]["attributedTo"] == ADA
    assert tweet["summary"] == tweet["object"]["content"]  # what the live feed shows
    assert (tweet["context"], tweet["actor"]["name"]) == ("urn:uuid:c0ffee", "tweeter")
    [latest] = await probe.wait_for("state/tweeter")  # retained: the dashboard's card
    assert latest["object"] == tweet["object"]


def png(seed: int) -> bytes:
    out = io.BytesIO()
    Picture.new("RGB", (64 + seed, 48), (seed * 40 % 256, 120, 200)).save(out, "PNG")
    return out.getvalue()


async def test_real_uploads_through_the_gateway_are_tweeted_and_reach_the_dashboard_feed(
    start_service: StartService, service_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    start_service("tweeter")
    start_service("gateway", IMAGES_DIR=str(tmp_path / "images"))
    await asyncio.gather(probe.wait_online("tweeter"), probe.wait_online("gateway"))
    url, root = service_env["PUBLIC_URL"], service_env["DOVECOTE_ROOT"]
    # Ada uploads as a script would, with a token she made on her account page (the
    # gateway's demo people exist in every test federation); the feed is a signed-out page.
    token = await token_for(url, "ada")
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/ws") as feed:
        uploads = []
        for seed, title in enumerate(["Harbour at dawn", "Cat"]):
            form = aiohttp.FormData()
            form.add_field("file", png(seed), filename=f"{seed}.png", content_type="image/png")
            form.add_field("title", title)
            bearer = {"Authorization": f"Bearer {token}"}
            async with http.post(f"{url}/api/images", data=form, headers=bearer) as r:
                assert r.status == 201, await r.text()
                uploads.append(await r.json())

        tweets = await probe.wait_for("events/tweet/created", count=2)
        by_image = {t["object"]["url"]: t for t in tweets}
        sizes = ["64×48", "65×48"]
        for upload, title, size in zip(uploads, ["Harbour at dawn", "Cat"], sizes, strict=True):
            tweet = by_image[upload["url"]]
            assert tweet["object"]["content"] == (
                f"Ada Lovelace shared “{title}” ({size}) {upload['url']}"
            )
            assert tweet["object"]["inReplyTo"] == upload["activity"]
            assert tweet["context"] == upload["context"]  # the upload's correlation id

        # The gateway forwards every events/# topic: the dashboard's feed gets the tweets.
        seen: list[dict[str, Any]] = []
        while len(seen) < 2:
            frame = orjson.loads(await asyncio.wait_for(feed.receive_str(), 15))
            if frame.get("topic") == f"{root}/events/tweet/created":
                seen.append(frame["activity"])
        assert sorted(a["id"] for a in seen) == sorted(t["id"] for t in tweets)
