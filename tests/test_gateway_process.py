"""The gateway as a real process: websocket push, commands, bad input, slow clients."""

from __future__ import annotations

import asyncio
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
import websockets
import yarl
from websockets.typing import Origin

from dovecote import activity as act
from dovecote_testing.gateway import cookie_header
from dovecote_testing.plugin import wait_until
from services.gateway.bus.replay import CURSOR_KEYS, key_of
from tests.fixtures import Federation, Pipeline

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


def ws_url(fed: Federation, query: str = "") -> str:
    return fed.url.replace("http://", "ws://") + "/ws" + query


async def as_person(fed: Federation, person: str) -> dict[str, str]:
    """The headers of a socket opened by ``person``'s signed-in page: their session cookie
    (the Origin is the page's own)."""
    async with await fed.signed_in(person) as http:
        return {"Cookie": cookie_header(http), "Origin": fed.url}


class Browserish:
    """A websocket client that keeps every frame it gets, raw."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.frames: list[bytes] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.conn:
            self.frames.append(msg.encode() if isinstance(msg, str) else msg)

    def decoded(self) -> list[dict[str, Any]]:
        return [orjson.loads(f) for f in self.frames]

    def topics(self) -> list[str]:
        return [f["topic"] for f in self.decoded() if "topic" in f]

    def cursor(self, start: list[str] | None = None) -> list[str]:
        """The cursor a dashboard would keep after these frames (dashboard.js): a fresh
        hello's ``after``, then the key of every frame numbered above that hello's seq (the
        state sent with it is not news); after a resumed hello, every frame's."""
        cursor, state_up_to = list(start or []), 0
        for f in self.decoded():
            if f.get("type") == "hello":
                cursor = cursor if f["resumed"] else list(f["after"])
                state_up_to = 0 if f["resumed"] else f["seq"]
            elif "key" in f and f["seq"] > state_up_to:
                cursor.append(f["key"])
        return cursor[-CURSOR_KEYS:]

    def resume_url(self, url: str, start: list[str] | None = None) -> str:
        return f"{url}?after={'.'.join(self.cursor(start))}"

    async def wait(self, pred: Any, timeout: float = 15) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def check() -> bool:
            found[:] = [f for f in self.decoded() if pred(f)]
            return bool(found)

        await wait_until(check, timeout, "a websocket frame")
        return found[0]


async def test_frames_carry_the_brokers_bytes_and_only_browser_topics(
    federation: Federation,
) -> None:
    headers = await as_person(federation, "ada")
    async with websockets.connect(ws_url(federation), additional_headers=headers) as conn:
        page = Browserish(conn)
        hello = await page.wait(lambda f: f.get("type") == "hello")
        assert hello["root"] == federation.probe.root
        await page.wait(lambda f: f.get("topic", "").endswith("/services/builder/1"))
        await conn.send(orjson.dumps({"command": "build.start"}).decode())
        await page.wait(lambda f: f.get("type") == "accepted")
        await page.wait(lambda f: f.get("topic", "").endswith("/events/build/succeeded"))
        # Garbage on the bus goes to a dead letter, never to a browser.
        federation.probe.publish("commands/builder/start", b"garbage")
        await federation.probe.wait_for("deadletter/builder")
        await asyncio.sleep(0.3)
    root = federation.probe.root
    kinds = {t[len(root) + 1 :].split("/")[0] for t in page.topics()}
    assert kinds <= {"events", "state", "services", "users"}, kinds
    mine = f"{root}/users/ada/"  # Ada's socket: her own notifications, nobody else's
    assert all(t.startswith(mine) for t in page.topics() if t.startswith(f"{root}/users/"))
    # Byte for byte what the broker delivered: nothing decoded and re-encoded.
    bus = {m.payload for m in federation.probe.messages if m.topic.endswith("build/succeeded")}
    [frame] = [f for f in page.frames if b"/events/build/succeeded" in f]
    seq, key = orjson.loads(frame)["seq"], orjson.loads(frame)["key"]
    prefix = b'{"seq":%d,"key":"%b","topic":"%b","activity":' % (
        seq,
        key.encode(),
        f"{root}/events/build/succeeded".encode(),
    )
    assert frame.startswith(prefix) and frame.endswith(b"}")
    assert frame[len(prefix) : -1] in bus
    # Its key is what every gateway computes from the message: its topic and activity id.
    [sent] = [orjson.loads(p) for p in bus]
    assert key == key_of(f"{root}/events/build/succeeded", sent["id"])


async def test_pages_see_a_workers_service_instance_and_status_only(
    federation: Federation,
) -> None:
    """Issue 11: a worker's Join names its process id and host, for operators on the bus;
    what the gateway gives pages (the socket, ``/api/state``) has its service, instance
    and status, and nothing else of it."""
    headers = await as_person(federation, "ada")
    async with websockets.connect(ws_url(federation), additional_headers=headers) as conn:
        page = Browserish(conn)
        frame = await page.wait(lambda f: f.get("topic", "").endswith("/services/builder/1"))
        await page.wait(lambda f: f.get("topic", "").endswith("/services/gateway/1"))
    assert frame["activity"] == {
        "type": "Join",
        "object": {"name": "builder", "instance": "1", "status": "online"},
    }
    async with aiohttp.ClientSession() as http, http.get(f"{federation.url}/api/state") as r:
        state = await r.read()
    for seen in (b"".join(page.frames), state):
        assert b'"pid"' not in seen and b'"host"' not in seen
    presence = [f for f in orjson.loads(state) if "/services/" in f["topic"]]
    assert {f["topic"].rsplit("/", 2)[-2] for f in presence} >= {"builder", "gateway"}
    assert all(set(f["activity"]["object"]) == {"name", "instance", "status"} for f in presence)
    # On the bus, operators still see where each worker runs.
    [join] = federation.probe.on("services/builder/1")[-1:]
    assert isinstance(join["object"]["pid"], int) and join["object"]["host"]


async def test_a_late_joiner_gets_the_current_build_at_once(federation: Federation) -> None:
    async with await federation.signed_in("ada") as http:
        async with http.post(f"{federation.url}/api/builds", json={}) as r:
            assert r.status == 202
            command_id = (await r.json())["id"]
        await federation.probe.wait_for("state/build", lambda a: a["object"]["progress"] >= 30)
        async with websockets.connect(ws_url(federation)) as conn:
            page = Browserish(conn)
            first = await page.wait(lambda f: f.get("topic", "").endswith("/state/build"), 2)
            assert first["activity"]["object"]["state"] == "running"
            assert first["activity"]["object"]["progress"] >= 30
            assert first["activity"]["context"] == command_id
        async with http.get(f"{federation.url}/") as r:
            html = await r.text()
        assert 'aria-valuenow="0"' not in html  # server-rendered, not an empty bar


NONSENSE: list[tuple[str, dict[str, Any], int, str]] = [  # path, request, status, reason
    ("/api/builds", {"data": "shouldFail=1"}, 415, "application/json"),
    (
        "/api/builds",
        {"data": "{oops", "headers": {"Content-Type": "application/json"}},
        400,
        "malformed JSON",
    ),
    ("/api/builds", {"json": {"shouldFail": "yes"}}, 400, "shouldFail must be bool"),
    ("/api/builds", {"json": {"branch": "main"}}, 400, "unknown field"),
    ("/api/builds", {"json": [1, 2]}, 400, "JSON object"),
    ("/api/builds/stop", {"json": {"id": "../../etc"}}, 400, "not a valid StopBuild"),
    ("/api/builds", {"json": {"pad": "x" * 40_000}}, 413, ""),
]


# The gateway's checks of a request, each answered before anything reaches the bus: the
# broker is not the point, and one federation serves them all (each one costs ~3 s of CPU).
@pytest.mark.brokers("mosquitto")
async def test_nonsense_posts_get_a_4xx_with_a_reason(federation: Federation) -> None:
    async with await federation.signed_in("ada") as http:
        for path, kwargs, status, reason in NONSENSE:
            async with http.post(federation.url + path, **kwargs) as r:
                said = await r.text()
                assert (r.status, reason in said) == (status, True), (path, kwargs, said)
        async with http.get(federation.url + "/healthz") as r:
            assert r.status == 200
    await asyncio.sleep(0.2)
    assert not any(m.topic.endswith("/commands/builder/start") for m in federation.probe.messages)


@pytest.mark.brokers("mosquitto")  # the gateway's static files: the broker is not the point
async def test_a_missing_static_file_is_a_404_with_a_reason(federation: Federation) -> None:
    """Found by the fuzz run: aiohttp's own 404 for a missing static file had no body."""
    async with aiohttp.ClientSession() as http:
        for path in ("/static/nope.js", "/static/..%2f..%2fweb.py", "/static/a%00b"):
            async with http.get(yarl.URL(federation.url + path, encoded=True)) as r:
                assert r.status == 404, path
                assert "no such file" in await r.text(), path
        async with http.get(f"{federation.url}/static/dashboard.js") as r:
            assert r.status == 200 and "javascript" in r.content_type


async def test_websocket_garbage_gets_error_frames_and_the_socket_stays(
    federation: Federation,
) -> None:
    headers = await as_person(federation, "ada")
    async with websockets.connect(ws_url(federation), additional_headers=headers) as conn:
        page = Browserish(conn)
        await conn.send("this is not json")
        await conn.send(orjson.dumps({"command": "build.explode"}).decode())
        await conn.send(orjson.dumps({"command": "build.start", "shouldFail": 3}).decode())
        await conn.send(b"\x00\x01binary")
        await conn.send("[]")
        await wait_until(
            lambda: sum(f.get("type") == "error" for f in page.decoded()) == 5, 10, "5 errors"
        )
        errors = " | ".join(f["error"] for f in page.decoded() if f.get("type") == "error")
        for why in ("malformed JSON", "unknown command", "shouldFail must be bool", "binary"):
            assert why in errors
        await conn.send(orjson.dumps({"command": "build.start"}).decode())
        await page.wait(lambda f: f.get("type") == "accepted")
    assert federation.gateway.alive()


@pytest.mark.brokers("mosquitto")  # refused at the HTTP upgrade: the broker is not the point
async def test_cross_origin_websockets_are_refused(federation: Federation) -> None:
    with pytest.raises(websockets.InvalidStatus) as err:
        async with websockets.connect(ws_url(federation), origin=Origin("http://evil.example")):
            pass
    assert err.value.response.status_code == 403


@pytest.mark.brokers("mosquitto")  # the accounts store, served as AS2: the broker is not the point
async def test_the_user_directory_is_served_as_as2(federation: Federation) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{federation.url}/users/ada") as r:
            assert r.content_type == "application/activity+json"
            ada = await r.json(content_type=None)
        assert ada["type"] == "Person" and ada["name"] == "Ada Lovelace"
        async with http.get(ada["followers"]) as r:
            followers = await r.json(content_type=None)
        assert {f["name"] for f in followers["items"]} == {"Grace Hopper", "Linus Torvalds"}
        async with http.get(ada["following"]) as r:
            following = await r.json(content_type=None)
        assert {f["preferredUsername"] for f in following["items"]} == {"grace", "linus"}
        async with http.get(f"{federation.url}/users/..%2Fetc") as r:
            assert r.status == 404


async def test_a_client_that_stops_reading_is_closed_and_others_keep_up(
    federation: Federation,
) -> None:
    url = urlsplit(federation.url)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect((url.hostname, url.port))
    stuck.sendall(
        b"GET /ws HTTP/1.1\r\nHost: " + url.netloc.encode() + b"\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        assert b"101" in stuck.recv(200)
        await flood_beside(federation)
    finally:  # a failure above leaves no socket for the next test's ResourceWarning
        stuck.close()


async def flood_beside(federation: Federation) -> None:
    """A flood of public frames: the reading client gets them, the stuck socket is closed."""
    async with websockets.connect(ws_url(federation), max_size=None) as conn:
        page = Browserish(conn)
        async with aiohttp.ClientSession() as http:

            async def sockets() -> int:
                async with http.get(federation.url + "/healthz") as r:
                    return int((await r.json())["sockets"])

            assert await sockets() == 2
            big = act.new("Create", ADA, {"type": "Note", "content": "x" * 2000})
            for n in range(4000):
                big["id"] = act.new_id()
                federation.probe.publish("events/flood/note", big, qos=0)
                if n % 100 == 0:  # ~500 frames/s (1 MB/s): a reading client keeps up even
                    await asyncio.sleep(0.2)  # on a machine at load 8 (at 2,000/s one that
                    # stalled for 0.25 s was closed as too slow); a stuck one cannot
            await wait_until(lambda: len(page.frames) > 3000, 30, "the good client's frames")
            for _ in range(100):
                if await sockets() == 1:
                    break
                await asyncio.sleep(0.1)
            assert await sockets() == 1, "the stuck socket was not closed"
    assert "frames unread" in federation.gateway.log


REFUSED_FRAMES: list[tuple[dict[str, Any], str]] = [
    # No command subscribes or publishes: the hub decides what a socket sees.
    ({"command": "subscribe", "topic": "users/grace/notifications"}, "unknown command"),
    ({"command": "subscribe", "topic": "#"}, "unknown command"),
    ({"command": "publish", "topic": "events/image/created", "activity": {}}, "unknown command"),
    ({"command": {"$ne": None}}, "unknown command"),
    ({"command": "build.start "}, "unknown command"),
    ({"command": "__proto__"}, "unknown command"),
    # The actor, type, topic and correlation are the gateway's to set, never the page's.
    ({"command": "build.start", "actor": {"type": "Person", "id": "x"}}, "unknown field"),
    ({"command": "build.start", "topic": "commands/builder/stop"}, "unknown field"),
    ({"command": "build.start", "type": "Delete"}, "unknown field"),
    ({"command": "build.start", "context": "urn:uuid:1", "id": "urn:uuid:2"}, "unknown field"),
    ({"command": "build.stop", "object": {"type": "Build"}}, "unknown field"),
]


@pytest.mark.brokers("mosquitto")
async def test_a_socket_can_send_only_whitelisted_commands_as_itself(
    federation: Federation,
) -> None:
    probe, root = federation.probe, federation.probe.root
    headers = await as_person(federation, "grace")
    async with websockets.connect(ws_url(federation), additional_headers=headers) as conn:
        page = Browserish(conn)
        await page.wait(lambda f: f.get("type") == "hello")
        for frame, _ in REFUSED_FRAMES:
            await conn.send(orjson.dumps(frame).decode())
        n = len(REFUSED_FRAMES)
        await wait_until(
            lambda: sum(f.get("type") == "error" for f in page.decoded()) == n, 10, "errors"
        )
        errors = [f["error"] for f in page.decoded() if f.get("type") == "error"]
        for (frame, why), error in zip(REFUSED_FRAMES, errors, strict=True):
            assert why in error, (frame, error)
        await asyncio.sleep(0.3)
        # Nothing on the bus but the services' presence and metrics (and retained state).
        quiet = (f"{root}/services/", f"{root}/state/", f"{root}/metrics/")
        assert not [m.topic for m in probe.messages if not m.topic.startswith(quiet)]
        # A whitelisted command goes out in the socket's user's name.
        await conn.send(orjson.dumps({"command": "build.start"}).decode())
        await page.wait(lambda f: f.get("type") == "accepted")
    [start] = await probe.wait_for("commands/builder/start")
    assert start["actor"]["preferredUsername"] == "grace"
    assert start["actor"]["id"].endswith("/users/grace")
    assert not [t for t in page.topics() if "/users/" in t or "/commands/" in t]
    assert len(probe.on("commands/builder/start")) == 1


@pytest.mark.brokers("mosquitto")
async def test_as_is_gone_a_parameter_or_a_body_never_says_who_you_are(
    federation: Federation,
) -> None:
    # Signed out, ?as=grace is nobody: a socket with public frames only, and no command.
    async with websockets.connect(ws_url(federation, "?as=grace")) as conn:
        page = Browserish(conn)
        hello = await page.wait(lambda f: f.get("type") == "hello")
        assert hello["user"] is None
        await conn.send(orjson.dumps({"command": "build.start"}).decode())
        error = await page.wait(lambda f: f.get("type") == "error")
        assert "sign in" in error["error"]
    # Signed in as Ada, ?as=grace is still Ada.
    ada = await as_person(federation, "ada")
    async with websockets.connect(ws_url(federation, "?as=grace"), additional_headers=ada) as c:
        page = Browserish(c)
        assert (await page.wait(lambda f: f.get("type") == "hello"))["user"] == "ada"
    async with aiohttp.ClientSession() as http:
        url = federation.url
        for headers in ({}, {"Origin": url}):  # no session: nobody, whatever ?as= says
            async with http.post(f"{url}/api/builds?as=grace", json={}, headers=headers) as r:
                assert r.status == 401 and "sign in" in await r.text()
        async with http.get(f"{url}/?as=grace", headers={"Cookie": "dovecote_user=grace"}) as r:
            assert r.status == 200 and 'data-user=""' in await r.text()
    async with await federation.signed_in("ada") as http:
        # The forged actor in a body is refused too; the right one is the asker's.
        grace = {"type": "Person", "id": f"{federation.url}/users/grace", "name": "Grace"}
        async with http.post(f"{federation.url}/api/builds?as=grace", json={"actor": grace}) as r:
            assert r.status == 400 and "unknown field(s): actor" in await r.text()
    await asyncio.sleep(0.3)
    quiet = tuple(f"{federation.probe.root}/{kind}/" for kind in ("services", "state", "metrics"))
    assert not [m.topic for m in federation.probe.messages if not m.topic.startswith(quiet)]


@pytest.mark.brokers("mosquitto")
async def test_error_answers_carry_the_security_headers_too(federation: Federation) -> None:
    base = federation.url
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/no/such/page", {}, 404),
        ("DELETE", "/", {}, 405),
        ("GET", "/", {"headers": {"Host": "evil.example"}}, 421),
        ("POST", "/api/builds", {"json": {}, "headers": {"Origin": "http://evil.example"}}, 403),
        ("GET", "/account", {"headers": {"Authorization": "Bearer x"}}, 403),
        ("GET", "/api/inbox", {"headers": {"Authorization": "Bearer dct_x"}}, 401),
        ("GET", "/ws", {}, 400),  # no upgrade: an ordinary request, an ordinary answer
        ("GET", "/images/..%2F..%2Fetc", {}, 400),
        ("GET", "/images/0123456789abcdef0123456789abcdef", {}, 404),
        ("POST", "/api/builds", {"data": "x"}, 415),
        ("POST", "/api/builds", {"json": {"pad": "x" * 40_000}}, 413),
        # (this gateway has no DOVECOTE_SERVICE_TOKEN: thumbnail uploads are off)
        ("PUT", "/images/0123456789abcdef0123456789abcdef/thumbnails/128", {}, 503),
    ]
    async with await federation.signed_in("ada") as http:
        for method, path, kwargs, status in cases:
            async with http.request(method, base + path, **kwargs) as r:
                assert r.status == status, (method, path, r.status)
                csp = r.headers.get("Content-Security-Policy", "")
                assert "script-src 'self'" in csp, (method, path, r.status)
                assert r.headers.get("X-Content-Type-Options") == "nosniff", (method, path)


async def gateway_sees(fed: Federation | Pipeline, check: Any, timeout: float = 10) -> None:
    """Wait until the gateway's own retained view (``/api/state``) passes ``check``: what a
    page would draw its controls from (the probe seeing an event proves nothing about when
    the gateway, another subscriber, gets the state published beside it)."""
    root = fed.probe.root
    seen: dict[str, Any] = {}

    async def poll() -> bool:
        async with aiohttp.ClientSession() as http, http.get(f"{fed.url}/api/state") as r:
            frames = await r.json()
        seen.clear()
        seen.update({f["topic"][len(root) + 1 :]: f["activity"] for f in frames})
        return bool(check(seen))

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await poll():
        assert loop.time() < deadline, f"the gateway never saw it: {sorted(seen)}"
        await asyncio.sleep(0.05)


@pytest.mark.build_tick(0.5)
async def test_a_command_that_cannot_work_now_is_refused_with_the_reason(
    federation: Federation,
) -> None:
    """Issue 14: Stop with nothing running answered 202 and published a Stop for nobody; a
    Start with the builder offline was queued and ran by itself on its next start."""
    url, probe = federation.url, federation.probe
    headers = await as_person(federation, "ada")
    async with await federation.signed_in("ada") as http:

        async def answer(path: str, body: dict[str, Any]) -> tuple[int, str]:
            async with http.post(f"{url}{path}", json=body) as r:
                return r.status, await r.text()

        assert await answer("/api/builds/stop", {}) == (409, "no build is running")
        status, _ = await answer("/api/builds", {})
        assert status == 202
        await gateway_sees(
            federation,
            lambda s: s.get("state/build", {}).get("object", {}).get("state") == "running",
        )
        assert await answer("/api/builds", {}) == (409, "Build #1 is running")
        other = "urn:uuid:00000000-0000-4000-8000-000000000000"
        status, why = await answer("/api/builds/stop", {"id": other})
        assert status == 409 and why.startswith(f"{other} is not the running build")
        # The same refusals on the websocket: error frames with the status.
        async with websockets.connect(ws_url(federation), additional_headers=headers) as conn:
            page = Browserish(conn)
            await conn.send(orjson.dumps({"command": "build.start"}).decode())
            frame = await page.wait(lambda f: f.get("type") == "error")
            assert (frame["status"], frame["error"]) == (409, "Build #1 is running")
        assert (await answer("/api/builds/stop", {}))[0] == 202
        await probe.wait_for("events/build/stopped")
        assert len(probe.on("commands/builder/stop")) == 1  # the refused ones: never sent
        assert len(probe.on("commands/builder/start")) == 1

        # The builder goes offline: Start is refused with that reason, and nothing queues.
        assert federation.builder is not None
        await asyncio.to_thread(federation.builder.stop)
        await gateway_sees(
            federation, lambda s: s.get("services/builder/1", {}).get("type") == "Leave"
        )
        async with http.post(f"{url}/api/builds", json={}) as r:
            assert (r.status, await r.text()) == (503, "builder is offline")
            assert r.headers["Retry-After"] == "10"
        assert len(probe.on("commands/builder/start")) == 1
