"""Photos in the shared database: two gateway processes with one ``DATABASE_URL`` and no
files in common (two machines behind a load balancer), and a resizer."""

from __future__ import annotations

import io
import secrets
from pathlib import Path

import aiohttp
import orjson
import pytest

from dovecote.tools.broker import free_port
from dovecote_testing.gateway import signed_in
from dovecote_testing.plugin import Probe, StartService
from dovecote_testing.postgres import PrivatePostgres
from services.gateway.images.store import CHUNK_BYTES
from tests import imagefiles
from tests.fixtures import joined, wait_http


async def upload(url: str, data: bytes) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename="cat.jpg", content_type="image/jpeg")
    async with await signed_in(url, "ada") as http, http.post(f"{url}/api/images", data=form) as r:
        await r.read()
        return r


async def get(url: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, r.content_type, await r.read()


@pytest.mark.brokers("mosquitto")  # the store is the point, not the broker
async def test_a_photo_uploaded_on_one_gateway_is_served_by_another(
    start_service: StartService,
    service_env: dict[str, str],
    probe: Probe,
    postgres: PrivatePostgres,
    tmp_path: Path,
) -> None:
    shared = {
        "DATABASE_URL": postgres.new_database(),
        "DOVECOTE_SERVICE_TOKEN": secrets.token_urlsafe(24),
        "THUMBNAIL_SIZES": "128",
        "RATE_UPLOADS_PERSON": "1/3600",  # one upload an hour per person, on all gateways
    }
    port_b = free_port()
    url_a, url_b = service_env["PUBLIC_URL"], f"http://127.0.0.1:{port_b}"
    data_a, data_b = Path(service_env["DOVECOTE_DATA_DIR"]), tmp_path / "b"
    start_service("gateway", **shared)
    start_service(
        "gateway",
        DOVECOTE_INSTANCE="2",
        PORT=str(port_b),
        PUBLIC_URL=url_b,
        DOVECOTE_DATA_DIR=str(data_b),
        **shared,
    )
    start_service("resizer", **shared)  # fetches from A (the image's URL), PUTs there
    for url in (url_a, url_b):
        await wait_http(f"{url}/healthz")
    await joined(probe, "resizer")

    original = imagefiles.photo(1600, 1200, grain=True)
    assert len(original) > CHUNK_BYTES  # served in more than one chunk
    r = await upload(url_a, original)
    assert r.status == 201
    image_url = r.headers["Location"]
    image_id = image_url.rsplit("/", 1)[1]
    await probe.wait_for("events/image/resized", lambda a: a["object"]["id"] == image_url)

    on_a = await get(f"{url_a}/images/{image_id}")
    on_b = await get(f"{url_b}/images/{image_id}")
    assert on_a[0] == on_b[0] == 200 and on_a == on_b and on_b[1] == "image/jpeg"
    async with aiohttp.ClientSession() as http, http.head(f"{url_b}/images/{image_id}") as r:
        assert r.status == 200 and r.headers["Content-Length"] == str(len(on_b[2]))
    thumb_a = await get(f"{url_a}/images/{image_id}/thumbnails/128")
    thumb_b = await get(f"{url_b}/images/{image_id}/thumbnails/128")
    assert thumb_b[0] == 200 and thumb_a == thumb_b and thumb_b[2].startswith(b"\xff\xd8")
    status, _, body = await get(f"{url_b}/api/images")
    assert status == 200
    [listed] = orjson.loads(body)["orderedItems"]
    assert listed["id"] == image_url and [p["width"] for p in listed["preview"]] == [128]
    # No file in common, nor any on either machine: the bytes are the database's.
    assert not [p for d in (data_a, data_b) for p in d.rglob("images/**/*") if p.is_file()]

    # Ada's hour's one upload was on A: B says so too.
    refused = await upload(url_b, imagefiles.photo(64, 48))
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 3500
