"""Rate limits (429 + Retry-After), per person and per address, set by environment variables:
the buckets in isolation, then a gateway process refusing uploads and commands."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import orjson
import pytest

from dovecote.config import ConfigError
from dovecote_testing.gateway import cookie_header, signed_in, token_for
from dovecote_testing.plugin import Probe, StartService
from services.gateway.web.limits import Bucket, Limits, Rate
from tests import imagefiles
from tests.fixtures import wait_http


def test_a_rate_is_n_per_seconds_or_off() -> None:
    assert Rate.parse("X", "30/60") == Rate(30, 60.0)
    assert Rate.parse("X", "5") == Rate(5, 1.0)
    assert Rate.parse("X", "0") is None and Rate.parse("X", "") is None
    for bad in ("-1/60", "x/60", "3/0", "3/-1", "3/1e9"):
        with pytest.raises(ConfigError, match="N/SECONDS"):
            Rate.parse("RATE_UPLOADS_PERSON", bad)


def test_a_bucket_lets_a_burst_through_then_one_per_interval() -> None:
    bucket = Bucket(Rate(3, 6.0))  # 3 at once, then one every 2 s
    assert [bucket.take("ada", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("ada", now=100.0) == pytest.approx(2.0)
    assert bucket.take("grace", now=100.0) == 0.0  # a bucket per key
    assert bucket.take("ada", now=101.0) == pytest.approx(1.0)
    assert bucket.take("ada", now=102.0) == 0.0
    bucket.sweep(now=1000.0)  # full again: forgotten
    assert bucket.held == {}


def test_a_request_counts_against_its_person_and_its_address() -> None:
    limits = Limits({"RATE_UPLOADS_PERSON": "2/60", "RATE_UPLOADS_ADDRESS": "2/60"})
    assert limits.wait("uploads", "ada", "10.0.0.1") == 0
    assert limits.wait("uploads", "ada", "10.0.0.2") == 0
    assert limits.wait("uploads", "ada", "10.0.0.3") > 0  # Ada's own limit, any address
    assert limits.wait("uploads", "grace", "10.0.0.1") == 0
    assert limits.wait("uploads", "linus", "10.0.0.1") > 0  # that address's limit
    # A refusal takes nothing: Linus may still upload from elsewhere.
    assert limits.wait("uploads", "linus", "10.0.0.9") == 0
    assert Limits({}).buckets.keys() == Limits.VARIABLES.keys()  # on by default


async def upload(http: aiohttp.ClientSession, url: str, seed: int) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    data = imagefiles.photo(32, 24, seed=seed, fmt="PNG")
    form.add_field("file", io.BytesIO(data), filename="p.png", content_type="image/png")
    async with http.post(f"{url}/api/images", data=form) as r:
        await r.read()
        return r


@pytest.mark.brokers("mosquitto")  # the gateway's own counting: the broker does not matter
async def test_over_a_limit_uploads_and_commands_get_429_with_retry_after_and_change_nothing(
    start_service: StartService, service_env: dict[str, str], probe: Probe
) -> None:
    start_service(
        "gateway",
        RATE_UPLOADS_PERSON="2/60",
        RATE_UPLOADS_ADDRESS="3/60",
        RATE_COMMANDS_PERSON="1/60",
    )
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz")
    await probe.wait_online("gateway")
    tokens = {who: await token_for(url, who) for who in ("ada", "grace", "linus")}

    def script(who: str) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(headers={"Authorization": f"Bearer {tokens[who]}"})

    async with script("ada") as ada, script("grace") as grace, script("linus") as linus:
        statuses = [(await upload(ada, url, n)).status for n in range(3)]
        assert statuses == [201, 201, 429]  # Ada's two a minute
        refused = await upload(ada, url, 9)
        assert refused.status == 429 and 1 <= int(refused.headers["Retry-After"]) <= 30
        assert (await upload(grace, url, 3)).status == 201  # the address's third
        assert (await upload(linus, url, 4)).status == 429  # the address's limit: 3 a minute
        async with ada.post(f"{url}/api/builds", json={}) as r:
            assert r.status == 202
        async with ada.post(f"{url}/api/builds", json={}) as r:
            assert r.status == 429 and "too many commands" in await r.text()
            assert int(r.headers["Retry-After"]) >= 1
        async with ada.put(f"{url}/api/following/linus") as r:  # a follow is a command too
            assert r.status == 429
        # On the websocket: an error frame that says when, and the socket stays.
        async with await signed_in(url, "ada") as page:
            headers = {"Cookie": cookie_header(page), "Origin": url}
            async with page.ws_connect(f"{url}/ws", headers=headers) as ws:
                await ws.send_str(orjson.dumps({"command": "build.start"}).decode())
                while (frame := orjson.loads(await ws.receive_str())).get("type") != "error":
                    pass
                assert "too many commands" in frame["error"] and frame["retryAfter"] >= 1
    await asyncio.sleep(0.3)
    assert len(probe.on("events/image/created")) == 3  # the accepted ones, no more
    assert len(probe.on("commands/builder/start")) == 1
    assert not probe.on("events/people/followed")
