"""Pages resume on any gateway (issue 25): 1,000 sockets over two gateway processes, one killed
with -9 during a stream of uploads and build results; every socket that was on it reconnects
to the other and resumes there, with nothing missed and nothing twice, compared with what
the broker published. Signed-in pages of two people check that a resumed socket of ada's
never gets grace's frames, across gateways.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

import aiohttp
import pytest

from dovecote.tools.broker import free_port
from dovecote_testing.balancer import Balancer
from dovecote_testing.gateway import cookie_header, signed_in
from dovecote_testing.plugin import Probe, StartService
from tests.chaos import NO_RATE_LIMITS, Traffic
from tests.fixtures import wait_http
from tests.pages import (
    ResumingPage,
    compare,
    is_marker,
    marker,
    published_between,
    quiet,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SOCKETS = 1000
SIGNED_IN = {"ada": 10, "grace": 10}  # pages of each person among them; the rest signed out
STREAM_SECONDS = 6.0


async def test_a_thousand_pages_resume_on_the_other_gateway_when_theirs_is_killed(
    start_service: StartService, probe: Probe, root: str
) -> None:
    ports = [free_port(), free_port()]
    balancer = await Balancer([("127.0.0.1", p) for p in ports]).start()
    token = secrets.token_urlsafe(24)
    env = {**NO_RATE_LIMITS, "PUBLIC_URL": balancer.url, "DOVECOTE_SERVICE_TOKEN": token}
    gateways = [
        start_service("gateway", PORT=str(port), DOVECOTE_INSTANCE=str(n + 1), **env)
        for n, port in enumerate(ports)
    ]
    for name in ("notifier", "points", "resizer"):
        start_service(name, **env)
    await asyncio.gather(*(wait_http(f"http://127.0.0.1:{p}/healthz", 60) for p in ports))
    for name in ("notifier", "points", "resizer"):
        await probe.wait_online(name, timeout=60)

    cookies = {}
    for person in SIGNED_IN:
        async with await signed_in(balancer.url, person) as http:
            cookies[person] = cookie_header(http)
    users: list[str | None] = [p for p, n in SIGNED_IN.items() for _ in range(n)]
    users += [None] * (SOCKETS - len(users))
    # Pages reach the gateways as through the balancer (its Host and Origin), directly:
    # the test's balancer would spend a core copying 1,000 sockets' frames.
    headers = {"Host": balancer.url.removeprefix("http://"), "Origin": balancer.url}
    urls = [f"ws://127.0.0.1:{p}/ws" for p in ports]
    pages: list[ResumingPage] = []
    traffic = Traffic(balancer.url, probe)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        try:
            for n, user in enumerate(users):
                own = {**headers, "Cookie": cookies[user]} if user else headers
                page = ResumingPage(http, urls[n % 2 :] + urls[: n % 2], own, user)
                page.start()
                pages.append(page)
                if n % 100 == 99:  # a hundred opening at a time
                    await asyncio.wait_for(asyncio.gather(*(p.open.wait() for p in pages)), 30)
            await traffic.prepare()
            await quiet(probe, root)  # the sign-ins' and tokens' own events have passed
            marker(probe, "start")
            await probe.wait_for("events/test/marker")
            flowing = asyncio.get_running_loop().create_task(
                traffic.run(STREAM_SECONDS, uploads_per_s=3, builds_per_s=2)
            )
            await asyncio.sleep(STREAM_SECONDS / 3)
            on_a = [p for p in pages if p.on == urls[0]]
            gateways[0].kill()
            killed = asyncio.get_running_loop().time()
            await flowing
            await asyncio.wait_for(asyncio.gather(*(p.open.wait() for p in on_a)), 60)
            await quiet(probe, root)  # the stream's last thumbnails, awards, notifications
            marker(probe, "end")
            await probe.wait_for("events/test/marker", is_marker("end"))
            sent = published_between(probe, root, "start", "end")
            end = sent[-1][1]
            for _ in range(300):
                if all(end in p.keys for p in pages):
                    break
                await asyncio.sleep(0.1)
        finally:
            for page in pages:
                await page.stop()
            await balancer.stop()

    report = compare(pages, sent, root)
    private = Counter(t.split("/")[2] for t, _ in sent if t.startswith(f"{root}/users/"))
    last = max(p.resumed_at or killed for p in on_a) - killed
    print(
        f"\n{SOCKETS} sockets, {len(on_a)} on the gateway killed; {len(sent)} messages for "
        f"pages between the markers; missed {report['missed']}, twice {report['twice']}, "
        f"reloads {report['reloads']}; the last socket resumed {last:.2f} s after the kill; "
        f"frames for one person only: {dict(private)}"
    )
    assert private["ada"] and private["grace"], "privacy across gateways went untested"
    assert len(on_a) > SOCKETS // 3 and all(p.resumed >= 1 for p in on_a)
    assert (report["missed"], report["twice"], report["reloads"]) == (0, 0, 0), report
