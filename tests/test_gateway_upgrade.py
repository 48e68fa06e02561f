"""A rolling upgrade of the gateways while pages are open (issue 26): they resume.

Two gateways behind a load balancer, pages open through it, a stream on the bus. Each
gateway in turn is replaced as docs/deploying.md says: taken out of the balancer, SIGTERM
(its pages get 1001 and reconnect through the balancer, to the other gateway), the new
process on the same port and instance, and back into the balancer once it has heard the bus
a moment. The second swap sends every page to the first gateway's new process, which
started after the pages did: it resumes them because it was listening when they saw their
last frames. Compared with what the broker published: nothing missed, nothing twice, no
page reloaded.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from dovecote import activity as act
from dovecote.tools.broker import free_port
from dovecote_testing.balancer import Balancer
from dovecote_testing.gateway import cookie_header, signed_in
from dovecote_testing.plugin import Probe, ServiceProcess, StartService, wait_until
from tests.fixtures import wait_http
from tests.pages import ResumingPage, compare, is_marker, marker, published_between, quiet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PAGES = 20  # half of them ada's, signed in
TICK = {"type": "Person", "id": "http://x/users/ticker", "name": "Ticker"}


async def ticking(probe: Probe, every: float = 0.05) -> None:
    n = 0
    while True:
        n += 1
        probe.publish(
            "events/test/tick", act.new("Create", TICK, {"type": "Note", "content": f"{n}"})
        )
        await asyncio.sleep(every)


async def test_pages_resume_through_a_rolling_upgrade_of_both_gateways(
    start_service: StartService, probe: Probe, root: str
) -> None:
    ports = [free_port(), free_port()]
    balancer = await Balancer([("127.0.0.1", p) for p in ports]).start()
    env = {"PUBLIC_URL": balancer.url}

    async def gateway(n: int) -> ServiceProcess:
        proc = start_service("gateway", PORT=str(ports[n]), DOVECOTE_INSTANCE=str(n + 1), **env)
        await wait_http(f"http://127.0.0.1:{ports[n]}/healthz", 60)
        return proc

    old = [await gateway(0), await gateway(1)]
    async with await signed_in(balancer.url, "ada") as http:
        cookie = cookie_header(http)
    ws_url = balancer.url.replace("http://", "ws://") + "/ws"
    pages: list[ResumingPage] = []
    async with aiohttp.ClientSession() as http:
        stream: asyncio.Task[None] | None = None
        try:
            for n in range(PAGES):
                headers = {"Origin": balancer.url, **({"Cookie": cookie} if n % 2 else {})}
                page = ResumingPage(http, [ws_url], headers, "ada" if n % 2 else None)
                page.start()
                await asyncio.wait_for(page.open.wait(), 20)
                pages.append(page)
            await quiet(probe, root)
            marker(probe, "start")
            await probe.wait_for("events/test/marker")
            stream = asyncio.get_running_loop().create_task(ticking(probe))
            for n in (0, 1):
                backend = ("127.0.0.1", ports[n])
                balancer.take_out(backend)  # no new pages for it
                await asyncio.to_thread(old[n].stop)  # SIGTERM: 1001; its pages go to the other
                await gateway(n)  # the next version, on the same port and instance
                await asyncio.sleep(1)  # it hears the stream before it gets pages
                balancer.put_in(backend)
                await wait_until(lambda: all(p.open.is_set() for p in pages), 30, "pages back")
            stream.cancel()
            await quiet(probe, root)
            marker(probe, "end")
            await probe.wait_for("events/test/marker", is_marker("end"))
            sent = published_between(probe, root, "start", "end")
            await wait_until(lambda: all(sent[-1][1] in p.keys for p in pages), 30, "the end")
        finally:
            if stream is not None:
                stream.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stream
            for page in pages:
                await page.stop()
            await balancer.stop()
    report = compare(pages, sent, root)
    resumes = sum(p.resumed for p in pages)
    print(
        f"\n{PAGES} pages, both gateways replaced in turn: {resumes} resumes, {len(sent)} "
        f"messages for pages; missed {report['missed']}, twice {report['twice']}, "
        f"reloads {report['reloads']}"
    )
    assert all(p.resumed >= 1 for p in pages), [(p.resumed, p.reloads) for p in pages]
    assert (report["missed"], report["twice"], report["reloads"]) == (0, 0, 0), (
        report,
        {r for p in pages for r in p.reloads},
    )
