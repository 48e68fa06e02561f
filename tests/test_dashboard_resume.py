"""The dashboard in headless chromium loses its socket mid-build and shows every tick anyway.

Two ways to lose it: the network drops (a proxy between the browser and the gateway is
unplugged for a while: the page resumes and the gateway replays what it missed), and the
gateway restarts (the new process did not hear the page's frames: the page cannot resume,
says so and reloads its state).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import pytest

from dovecote_testing.plugin import Probe, StartService
from tests.fixtures import Federation, open_as, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.brokers("mosquitto")]

FEED = """() => [...document.querySelectorAll('#feed li:not(.feed-gap)')].reverse()
    .map(li => li.querySelector('code').textContent + ' ' +
               li.querySelector('.feed-detail').textContent)"""


class Cable:
    """A TCP proxy in front of the gateway that the test can unplug: a dropped network."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.unplugged = False
        self.links: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def unplug(self) -> None:
        """Every connection reset, and new ones too until ``plug``."""
        self.unplugged = True
        for writer in self.links:
            writer.transport.abort()
        self.links.clear()

    def plug(self) -> None:
        self.unplugged = False

    async def close(self) -> None:
        self.unplug()
        if self.server is not None:
            self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.unplugged:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.links |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(src, dst))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(1 << 16):
                dst.write(data)
                await dst.drain()
        if self.unplugged:
            dst.transport.abort()
        else:
            dst.close()


def bus_feed(fed: Federation) -> list[str]:
    """The build's events as the page's feed shows them: topic, then progress or summary."""
    root = fed.probe.root
    lines = []
    for m in fed.probe.messages:
        if m.topic.startswith(f"{root}/events/build/"):
            a = orjson.loads(m.payload)
            obj = a.get("object") or {}
            detail = a.get("summary") or (f"{obj['progress']}%" if "progress" in obj else "")
            lines.append(f"{m.topic[len(root) + 1 :]} {detail}")
    return lines


async def open_dashboard(browser: Any, url: str) -> Any:
    page = await open_as(browser, url, "ada")
    await page.evaluate("() => { window.notReloaded = true; }")  # gone if the page reloads
    return page


@pytest.fixture
async def cabled(
    request: pytest.FixtureRequest,
    start_service: StartService,
    service_env: dict[str, str],
    probe: Probe,
) -> Any:
    """Builder, notifier and a gateway reached through the cable: the cable's address is its
    PUBLIC_URL (as a proxy's is), the only host it answers to."""
    cable = Cable(int(service_env["PORT"]))
    public = await cable.start()
    tick = request.node.get_closest_marker("build_tick")
    env = {"PUBLIC_URL": public, "BUILD_TICK_SECONDS": str(tick.args[0]) if tick else "0.2"}
    for name in ("builder", "notifier", "gateway"):
        start_service(name, **env)
    await wait_http(f"http://127.0.0.1:{service_env['PORT']}/healthz")
    for name in ("builder", "notifier", "gateway"):
        await probe.wait_online(name)
    yield cable, public
    await cable.close()


async def finished(page: Any) -> None:
    await page.wait_for_selector("#progress[aria-valuenow='100']", timeout=20_000)
    await page.wait_for_selector("#bar.state-succeeded")
    await page.wait_for_selector("#connection.pill-ok")


@pytest.mark.build_tick(0.4)
async def test_a_dropped_socket_resumes_and_the_page_shows_every_tick(
    cabled: tuple[Cable, str], probe: Probe, browser: Any
) -> None:
    cable, public = cabled
    federation = Federation(public, probe, None, None)  # type: ignore[arg-type]
    try:
        page = await open_dashboard(browser, public)
        await page.click("#start")
        started = await federation.probe.wait_for("events/build/started")
        await federation.probe.wait_for(
            "events/build/progress", lambda a: a["object"]["progress"] >= 20
        )
        cable.unplug()  # the network drops mid-build
        await page.wait_for_selector("#connection.pill-wait")
        seen = len(federation.probe.on("events/build/progress"))
        await federation.probe.wait_for("events/build/progress", count=seen + 2)  # missed
        cable.plug()
        await finished(page)
        await asyncio.sleep(0.3)  # a duplicate would come right after
        feed = await page.evaluate(FEED)
        assert feed == bus_feed(federation), "every tick, once, in order"
        assert len(feed) == 11 and started
        assert await page.evaluate("() => document.body.dataset.reloads") is None
        assert await page.evaluate("() => window.notReloaded") is True
    finally:
        cable.plug()


FEED_WITH_GAPS = """() => [...document.querySelectorAll('#feed li')].reverse()
    .map(li => li.classList.contains('feed-gap') ? 'GAP' :
               li.querySelector('code').textContent + ' ' +
               li.querySelector('.feed-detail').textContent)"""


@pytest.mark.build_tick(0.4)
async def test_a_gateway_restart_mid_build_makes_the_page_reload_its_state(
    federation: Federation, browser: Any
) -> None:
    page = await open_dashboard(browser, federation.url)
    await page.click("#start")
    await federation.probe.wait_for(
        "events/build/progress", lambda a: a["object"]["progress"] >= 20
    )
    federation.gateway.stop()  # a new process: it did not hear what the page saw
    await page.wait_for_selector("#connection.pill-wait")
    federation.gateway.start()
    await wait_http(f"{federation.url}/healthz")
    await page.wait_for_function("() => document.body.dataset.reloads === '1'", timeout=20_000)
    await finished(page)
    gap = await page.text_content("#feed .feed-gap")
    assert gap is not None and "this gateway has not heard the frames" in gap
    assert await page.text_content("#build-state") == "succeeded"
    assert "succeeded" in await page.text_content("#history")
    # Reloaded in place: the page kept its script state, and its feed goes on after the gap.
    assert await page.evaluate("() => window.notReloaded") is True

    # Whether the first build's last events fall in the gap depends on how long the restart
    # and the page's reconnect backoff took (on a busy machine, longer than the build):
    # a second build, started once the page is back, shows whole and in order after the gap.
    await federation.probe.wait_for("events/build/succeeded")
    first_build = len(bus_feed(federation))
    await page.click("#start")
    [_, second] = await federation.probe.wait_for("events/build/succeeded", count=2)
    await page.wait_for_function(
        """name => { const li = document.querySelector('#feed li:not(.feed-gap)');
            return li.querySelector('code').textContent === 'events/build/succeeded'
                && li.textContent.includes(name); }""",
        arg=second["object"]["name"],
    )
    feed = await page.evaluate(FEED_WITH_GAPS)
    assert feed.count("GAP") == 1
    after_gap = feed[feed.index("GAP") + 1 :]
    bus = bus_feed(federation)
    assert after_gap == bus[-len(after_gap) :], "every event since the reload, once, in order"
    second_build = bus[first_build:]
    assert len(second_build) == 11 and after_gap[-11:] == second_build  # started ... succeeded
