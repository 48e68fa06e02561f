"""Issue 11, the runtime side: a worker survives another client taking its client id.

The reported fight (two clients on one service's id, each reconnecting every second) left a
worker alive, logged out, silent, and still "online". The trap it fell in is narrow: the
broker accepts the worker's connection (CONNACK) and, at once, hands the id to the other
client, before the worker's connecting code has looked at the answer. Here the moment is
made, not waited for: a TCP hop between worker and broker lets a second client take the id
as soon as it has passed the broker's CONNACK on, and the thread that opened the connection
is held until the hang-up has reached the worker (a busy machine does that by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from dovecote import Delivery, Service, handles
from dovecote import activity as act
from dovecote.config import Settings, parse_mqtt_url
from dovecote.errors import BusError
from dovecote.mqtt import Connection
from dovecote.tools.broker import free_port
from dovecote.worker import Worker
from dovecote_testing.plugin import Probe, TestBroker
from services.gateway import topics as gateway_topics
from tests.chaos import FaultRow, record

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


class Fought(Service):
    """Counts the builds it is asked to start; its client id is the one fought over."""

    name = "fought"

    async def setup(self) -> None:
        self.started: list[str] = []

    @handles(gateway_topics.BUILD_START)
    async def on_start(self, activity: gateway_topics.StartBuild, delivery: Delivery) -> None:
        self.started.append(activity.id)


class HeldConnects(ThreadPoolExecutor):
    """The loop's default executor, where a connection's blocking connect runs: while
    ``go`` is clear, a call returns only once it is set (its work is done at once)."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.go = threading.Event()
        self.go.set()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def held() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                self.go.wait(10)

        return super().submit(held)


def connect_packet(client_id: str) -> bytes:
    """An MQTT 3.1.1 CONNECT asking for the session of ``client_id`` (clean session 0)."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x00\x00\x1e" + len(cid).to_bytes(2, "big") + cid
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


async def take_client_id(host: str, port: int, client_id: str) -> None:
    """Connect as ``client_id`` (the broker hangs up on whoever had it), then leave cleanly:
    its session, with the worker's subscriptions, stays for the worker."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(connect_packet(client_id))
    connack = await asyncio.wait_for(reader.readexactly(4), 10)
    assert connack[0] == 0x20 and connack[3] == 0, f"not accepted: {connack!r}"
    with contextlib.suppress(ConnectionError):  # the worker may have taken it back already
        writer.write(b"\xe0\x00")  # DISCONNECT: no will, the session stays
        await writer.drain()
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class Hop:
    """A TCP hop to the broker. ``after_connack``, when set, runs once, right after the
    broker's next CONNACK has been passed on; ``hung_up`` is set when that connection has
    been closed on the worker's side."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = free_port()
        self.after_connack: Callable[[], Awaitable[None]] | None = None
        self.hung_up = asyncio.Event()
        self.failures: list[BaseException] = []  # the hook's, say: the test then fails
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    async def start(self) -> Hop:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = asyncio.get_running_loop().create_task(self._link(reader, writer))
        self._links.add(link)
        link.add_done_callback(self._links.discard)

    async def _link(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.upstream)  # an IP: no resolver thread
        hook: list[Callable[[], Awaitable[None]]] = []

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, watch: bool) -> None:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
                if watch and data[0] == 0x20 and self.after_connack is not None:
                    hook.append(self.after_connack)
                    self.after_connack = None
                    await hook[0]()
                watch = False

        ways = {
            asyncio.ensure_future(pipe(down_r, up_w, False)),
            asyncio.ensure_future(pipe(up_r, down_w, True)),
        }
        try:
            await asyncio.wait(ways, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for way in ways:
                if way.done() and not way.cancelled():
                    failed = way.exception()
                    if failed is not None and not isinstance(failed, ConnectionError):
                        self.failures.append(failed)
                way.cancel()
            for w in (down_w, up_w):
                w.close()
            if hook:
                self.hung_up.set()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for link in list(self._links):
            link.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)


@pytest.fixture
async def hop(broker: TestBroker) -> AsyncIterator[Hop]:
    h = await Hop(broker.host, broker.port).start()
    yield h
    await h.stop()


def settings_via(hop: Hop, root: str) -> Settings:
    # Alone (no pool, no $share): the worker's subscriptions live in its own session.
    return Settings.from_env(
        {
            "MQTT_URL": f"mqtt://127.0.0.1:{hop.port}",
            "DOVECOTE_ROOT": root,
            "DOVECOTE_POOL_SIZE": "1",
            "DOVECOTE_METRICS_INTERVAL": "0",
        }
    )


async def test_a_worker_whose_id_is_taken_right_after_its_connack_comes_back(
    broker: TestBroker, hop: Hop, probe: Probe, root: str
) -> None:
    """Before: the hang-up came while the task that connected was still finishing; no
    task to reconnect was started, and that one waited for a CONNACK it had missed: the
    worker stayed cut off for its keepalive (30 s; MQTT_KEEPALIVE may make it an hour),
    and again at the next such moment. Now it is back at once, and the builds queued in
    its session meanwhile are all started, each once."""
    held = HeldConnects()
    asyncio.get_running_loop().set_default_executor(held)
    w = Worker(Fought, settings_via(hop, root))
    await w.start()
    await probe.wait_online("fought")
    await w.conn.flush()
    host, port = broker.host, broker.port
    builds = [act.new("Start", ADA, {"type": "Build"}) for _ in range(5)]

    async def fight() -> None:
        await take_client_id(host, port, w.client_id)

    # The fight: someone takes the worker's id; the worker takes it back at once, and the
    # moment the broker accepts it, someone takes it again.
    held.go.clear()
    hop.after_connack = fight
    await take_client_id(host, port, w.client_id)
    await asyncio.wait_for(hop.hung_up.wait(), 10)
    assert not hop.failures
    for build in builds:
        probe.publish("commands/builder/start", build)
    assert await probe.conn.flush(10), "the broker took the builds into the worker's session"
    await asyncio.sleep(0.2)  # the hang-up is read before the connecting thread returns
    held.go.set()

    svc = w.service
    assert isinstance(svc, Fought)
    ids = {b["id"] for b in builds}
    with contextlib.suppress(AssertionError):  # a loss shows in the row, and fails there
        await wait_for_builds(svc, ids, 10)
    await asyncio.sleep(0.3)  # a duplicate would come right behind
    started = [i for i in svc.started if i in ids]
    lost = len(ids - set(started))
    await w.shutdown()
    record(
        FaultRow(
            f"a client takes a worker's client id the moment the broker accepts it ({broker.kind})",
            len(ids),
            len(set(started)),
            lost,
            len(started) - len(set(started)),
        )
    )
    assert w.conn.connects >= 3  # the first, the one taken from it, the one back


async def wait_for_builds(svc: Fought, ids: set[str], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ids <= set(svc.started):
        assert loop.time() < deadline, "the worker did not start every build"
        await asyncio.sleep(0.05)


async def test_a_worker_that_can_no_longer_connect_exits_with_code_1(
    hop: Hop, probe: Probe, root: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its connection's reconnecting stops on an unexpected error (a bug): the worker does
    not sit there cut off; it stops and exits non-zero, saying why, so that `dovecote run`
    or systemd starts it again."""
    w = Worker(Fought, settings_via(hop, root))
    running = asyncio.create_task(w.run())
    await probe.wait_online("fought")

    def broken() -> None:
        raise RuntimeError("a bug in connecting")

    w.conn._client.reconnect = broken  # type: ignore[attr-defined]
    hop.after_connack = None
    await hop.stop()  # the link to the broker is cut: the worker reconnects, and fails so
    with caplog.at_level(logging.CRITICAL, "dovecote"):
        assert await asyncio.wait_for(running, 15) == 1
    assert "a bug in connecting" in caplog.text
    assert "exit code 1" in caplog.text
    leave = await probe.wait_for(
        "services/fought/1", lambda a: a["type"] == "Leave" and a["object"]["status"] == "offline"
    )
    assert leave, "the broker published the worker's will"


async def test_waiting_for_a_connection_that_stopped_reconnecting_fails_at_once() -> None:
    """Whoever waits for the connection (a worker's start-up probe, a tool) is told, not
    left waiting for ever."""
    conn = Connection(parse_mqtt_url(f"mqtt://127.0.0.1:{free_port()}"), "x", on_message=print)

    def broken() -> None:
        raise RuntimeError("a bug in connecting")

    conn._client.reconnect = broken  # type: ignore[method-assign,assignment]
    conn.start()
    with pytest.raises(BusError, match="a bug in connecting"):
        await conn.wait_connected(10)
    assert isinstance(await asyncio.wait_for(conn.wait_broken(), 1), RuntimeError)
    await conn.stop(1)


async def test_a_connection_stopped_the_moment_it_is_accepted_stops_connecting(
    broker: TestBroker, root: str
) -> None:
    """Stopped (here dropped, from its own on_connected) in the very loop turn its CONNACK
    was read: the connecting task must end. Python 3.11's ``asyncio.wait_for`` returns the
    result and swallows the cancellation when both come at once: the task went on to wait
    for the end of a connection no one would close, and a worker's start-up probe's
    ``stop`` waited with it (a federation's services took over 15 s to start under load)."""
    conn: Connection

    def accepted(_: bool) -> None:
        conn.drop()

    conn = Connection(
        parse_mqtt_url(broker.url), f"{root}-dropped", on_message=print, on_connected=accepted
    )
    conn.start()
    connecting = conn.reconnecting.task  # the task that connects
    assert connecting is not None
    await asyncio.wait({connecting}, timeout=10)
    assert conn.connects == 1 and connecting.cancelled()
