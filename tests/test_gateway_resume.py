"""A page that reconnects resumes without a gap: the gateway as a real process, real broker.

Each test keeps a "witness" socket open: once it has a frame, the gateway has handled that
bus message, so the page that was away missed it (and nothing is left to timing).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import websockets

from dovecote import activity as act
from dovecote_testing.gateway import cookie_header, signed_in
from dovecote_testing.plugin import Probe, StartService
from tests.fixtures import wait_http
from tests.test_gateway_process import Browserish

GRACE = {"type": "Person", "id": "http://localhost:8080/users/grace", "name": "Grace"}
Gateway = Callable[..., Awaitable[str]]  # starts one with env overrides; its ws URL


@pytest.fixture
def gateway(start_service: StartService, service_env: dict[str, str], probe: Probe) -> Gateway:
    async def start(**env: str) -> str:
        start_service("gateway", **env)
        await wait_http(f"{service_env['PUBLIC_URL']}/healthz")
        await probe.wait_online("gateway")  # subscribed: what is published now reaches it
        return service_env["PUBLIC_URL"].replace("http://", "ws://") + "/ws"

    return start


def tick(probe: Probe, n: int) -> None:
    note = {"type": "Note", "content": f"tick {n}"}
    probe.publish("events/test/tick", act.new("Create", GRACE, note))


def notify(probe: Probe, user: str, text: str) -> None:
    about = {"type": "Create", "id": act.new_id(), "actor": GRACE, "object": {"type": "Note"}}
    note = act.new("Announce", GRACE, about, summary=text, to=[f"http://x/users/{user}"])
    probe.publish(f"users/{user}/notifications", note)


def ticks(page: Browserish) -> list[int]:
    return [
        int(f["activity"]["object"]["content"].split()[1])
        for f in page.decoded()
        if f.get("topic", "").endswith("/events/test/tick")
    ]


def has_tick(n: int) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f.get("activity", {}).get("object", {}).get("content") == f"tick {n}"


def is_hello(f: dict[str, Any]) -> bool:
    return f.get("type") == "hello"


def resume(url: str, cursor: list[str]) -> str:
    return f"{url}?after={'.'.join(cursor)}"


async def signed(url: str, person: str) -> dict[str, str]:
    """Headers of a socket from ``person``'s signed-in page (their session cookie)."""
    page = url.replace("ws://", "http://").removesuffix("/ws")
    async with await signed_in(page, person) as http:
        return {"Cookie": cookie_header(http), "Origin": page}


def connect(url: str, headers: dict[str, str] | None = None) -> Any:
    return websockets.connect(url, additional_headers=headers)


async def test_a_page_that_comes_back_gets_exactly_what_it_missed_in_order(
    gateway: Gateway, probe: Probe
) -> None:
    url = await gateway()
    async with connect(url, await signed(url, "linus")) as w:
        witness = Browserish(w)
        async with connect(url, await signed(url, "ada")) as conn:
            page = Browserish(conn)
            hello = await page.wait(is_hello)
            assert hello["resumed"] is False and isinstance(hello["after"], list)
            for n in range(5):
                tick(probe, n)
            last = (await page.wait(has_tick(4)))["seq"]
        for n in range(5, 25):  # the page is away
            tick(probe, n)
        await witness.wait(has_tick(24))
        async with connect(page.resume_url(url), await signed(url, "ada")) as conn:
            back = Browserish(conn)
            again = await back.wait(is_hello)
            await back.wait(has_tick(24))
            tick(probe, 25)  # and live again after the replay
            await back.wait(has_tick(25))
    assert again["resumed"] is True and "after" not in again
    assert ticks(page) == list(range(5))
    assert ticks(back) == list(range(5, 26))  # no gap, no duplicate, in order
    frames = back.decoded()
    assert frames[0] == again
    assert all(f["topic"].endswith("/events/test/tick") for f in frames[1:])  # no snapshot
    seqs = [f["seq"] for f in frames[1:]]
    assert seqs == sorted(seqs) and seqs[0] > last and len(set(seqs)) == len(seqs)


@pytest.mark.brokers("mosquitto")
async def test_a_page_that_had_received_nothing_resumes_from_its_hello(
    gateway: Gateway, probe: Probe
) -> None:
    url = await gateway()
    async with connect(url, await signed(url, "linus")) as w:
        witness = Browserish(w)
        async with connect(url, await signed(url, "ada")) as conn:
            hello = orjson.loads(await conn.recv())
            assert hello["type"] == "hello"  # and it leaves before any bus message
        assert hello["after"], "the gateway's presence, at least, came before"
        for n in range(10):
            tick(probe, n)
        await witness.wait(has_tick(9))
        async with connect(resume(url, hello["after"]), await signed(url, "ada")) as conn:
            back = Browserish(conn)
            await back.wait(has_tick(9))
    assert back.decoded()[0]["resumed"] is True
    assert ticks(back) == list(range(10))


@pytest.mark.brokers("mosquitto")
async def test_a_page_resumes_from_the_moment_its_html_was_rendered(
    gateway: Gateway, probe: Probe
) -> None:
    url = await gateway()
    page_url = url.replace("ws://", "http://").removesuffix("/ws") + "/"
    async with aiohttp.ClientSession() as http, http.get(page_url) as r:
        html = await r.text()
    found = re.search(r'data-after="([0-9a-f.]+)"', html)
    assert found, "the page carries the point it resumes from"
    rendered = found[1].split(".")
    async with connect(url, await signed(url, "linus")) as w:
        witness = Browserish(w)
        for n in range(3):  # between the page's render and its socket
            tick(probe, n)
        await witness.wait(has_tick(2))
        async with connect(resume(url, rendered), await signed(url, "ada")) as conn:
            page = Browserish(conn)
            await page.wait(has_tick(2))
    assert ticks(page) == [0, 1, 2]


@pytest.mark.brokers("mosquitto")
async def test_a_cursor_too_old_unknown_or_of_the_old_kind_gets_cannot_resume_then_the_state(
    gateway: Gateway, probe: Probe
) -> None:
    url = await gateway(GATEWAY_REPLAY_BYTES="5000")  # room for a few ticks
    async with connect(url, await signed(url, "linus")) as w:
        witness = Browserish(w)
        hello = await witness.wait(is_hello)
        for n in range(20):
            tick(probe, n)
        await witness.wait(has_tick(19))
        cases = [
            ("not held here", resume(url, hello["after"])),  # those frames left the ring
            ("not held here", resume(url, ["0123456789ab"] * 3)),  # no gateway sent these
            ("names no frame", f"{url}?since=5&epoch=0123456789abcdef"),  # before keys
        ]
        for why, resume_url in cases:
            async with connect(resume_url, await signed(url, "ada")) as conn:
                page = Browserish(conn)
                fresh = await page.wait(is_hello)
                # The retained state follows, as for a newcomer: here the gateway's presence.
                await page.wait(lambda f: f.get("topic", "").endswith("/services/gateway/1"))
                tick(probe, 100)
                await page.wait(has_tick(100))  # then live frames
                first = page.decoded()[0]
                assert first["type"] == "cannot-resume" and why in first["reason"], first
                assert fresh["resumed"] is False and fresh["after"]
                assert ticks(page) == [100]
            await witness.wait(has_tick(100))
            witness.frames.clear()


KEY = "0123456789ab"
MALFORMED = {
    "after=xyz": "12 hex digits",
    "after=0123456789AB": "12 hex digits",  # keys are lower case
    f"after={KEY}.{KEY[:-1]}": "12 hex digits",
    f"after={KEY}..{KEY}": "12 hex digits",
    "after=" + ".".join([KEY] * 25): "up to 24",
    "after=%D9%A0123456789ab": "12 hex digits",  # an Arabic-Indic zero is a digit to isdigit
}


@pytest.mark.brokers("mosquitto")
async def test_a_malformed_resume_point_is_refused_with_a_reason(gateway: Gateway) -> None:
    url = await gateway()
    for query, reason in MALFORMED.items():
        with pytest.raises(websockets.InvalidStatus) as err:
            async with websockets.connect(f"{url}?{query}"):
                pass
        assert err.value.response.status_code == 400, query
        assert reason in err.value.response.body.decode(), query


async def test_a_replay_never_carries_another_persons_notification(
    gateway: Gateway, probe: Probe
) -> None:
    url = await gateway()
    people = ("ada", "grace", "linus")
    async with (
        connect(url, await signed(url, "ada")) as wa,
        connect(url, await signed(url, "grace")) as wg,
    ):
        witness = {"ada": Browserish(wa), "grace": Browserish(wg)}
        hellos = {}
        headers = {who: await signed(url, who) for who in people}
        for who in people:  # each connects, then leaves
            async with connect(url, headers[who]) as conn:
                hellos[who] = orjson.loads(await conn.recv())["after"]
        notify(probe, "grace", "for grace 1")
        tick(probe, 1)
        notify(probe, "ada", "for ada")
        notify(probe, "grace", "for grace 2")
        await witness["ada"].wait(lambda f: f.get("activity", {}).get("summary") == "for ada")
        await witness["grace"].wait(lambda f: f.get("activity", {}).get("summary") == "for grace 2")
        await witness["grace"].wait(has_tick(1))
        async with (
            connect(resume(url, hellos["ada"]), headers["ada"]) as ca,
            connect(resume(url, hellos["grace"]), headers["grace"]) as cg,
            connect(resume(url, hellos["linus"]), headers["linus"]) as cl,
            connect(resume(url, hellos["ada"])) as cn,  # Ada's page, signed out since
        ):
            sockets = (Browserish(ca), Browserish(cg), Browserish(cl), Browserish(cn))
            pages = dict(zip((*people, "nobody"), sockets, strict=True))
            for page in pages.values():
                await page.wait(has_tick(1))
            tick(probe, 2)  # a live frame after the replays: each replay is complete
            for page in pages.values():
                await page.wait(has_tick(2))
    got = {
        who: [
            f["activity"].get("summary") or f["activity"]["object"]["content"]
            for f in page.decoded()
            if "/users/" in f.get("topic", "") or "/events/test/" in f.get("topic", "")
        ]
        for who, page in pages.items()
    }
    assert got["ada"] == ["tick 1", "for ada", "tick 2"]
    assert got["grace"] == ["for grace 1", "tick 1", "for grace 2", "tick 2"]
    assert got["linus"] == ["tick 1", "tick 2"]
    assert got["nobody"] == ["tick 1", "tick 2"]  # signed out: nobody's notifications
