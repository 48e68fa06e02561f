"""The hostile-input fuzz run: thousands of malformed inputs on every surface of the federation.

1. the bus: every topic some service subscribes to (derived from the services' handlers and
   the registry, never listed by hand) gets payloads that are no activity at all, while
   uploads and build results flow; every subscriber must park each one with a reason
   (``deadletter/<service>``), and every good message must have all its effects, once;
2. the gateway's HTTP side: every route of its aiohttp router (a new route is fuzzed as
   soon as it exists) with hostile methods, paths, queries, headers and bodies, plus raw
   bytes on the socket: never a 5xx, never a hang, a reason with every 4xx;
3. the websocket: hostile frames and connection parameters; each frame gets an error frame
   and the socket stays open, and a bystander socket receives every live frame.

Hypothesis makes the inputs (``tests/hostile.py``): ``FUZZ_EXAMPLES`` of them in all
(10,000 by default, split 50/30/20 between the surfaces), from ``FUZZ_SEED`` (6 by
default, ``random`` for a new one; the seed is printed, so a failure can be replayed).
``make chaos`` runs 100,000 with a random seed.

Mosquitto only: what is under test is the runtime's and the gateway's rejection path, the
same code on both brokers, and the fuzz's cost (tens of MB of payloads, ~30 s) is better
spent once than twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import secrets
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import pytest
from yarl import URL

from dovecote import activity as act
from dovecote import letters, topics
from dovecote.tools import manifest
from dovecote_testing.gateway import cookie_header, signed_in, token_for
from dovecote_testing.plugin import Probe, ServiceProcess, StartService, TestBroker, wait_until
from services.gateway.bus.hub import Hub
from services.gateway.web.app import create_app
from tests import hostile
from tests.chaos import NO_RATE_LIMITS, FaultRow, Traffic, record, settle
from tests.fixtures import gateway_context, wait_http
from tests.imagefiles import photo

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.slow,
    pytest.mark.timeout(3600),  # make chaos: 100,000 inputs
    pytest.mark.brokers("mosquitto"),
]

SHARE = {"bus": 0.5, "http": 0.3, "ws": 0.2}
HEAD = 4096  # bytes of each hostile payload kept to check its letter against


async def draw(*wanted: tuple[str, int], seed: int) -> list[list[Any]]:
    """Corpora of ``tests/hostile.py``'s strategies, drawn one after the other in a process
    of their own: the test's loop keeps running meanwhile (services start), and hypothesis
    sees no other code touch the global ``random`` while it draws (it would call that
    flaky), which a thread of this process could not promise."""
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return [
            await loop.run_in_executor(pool, hostile.corpus_of, name, n, seed) for name, n in wanted
        ]


def share(surface: str) -> int:
    return max(1, round(hostile.examples() * SHARE[surface]))


@pytest.fixture(scope="module")
def seed() -> int:
    value = hostile.fuzz_seed()
    print(f"\nFUZZ_SEED={value} FUZZ_EXAMPLES={hostile.examples()}")
    return value


def clean_logs(procs: list[ServiceProcess]) -> None:
    """Every process alive, and not one traceback in what it said."""
    for proc in procs:
        assert proc.alive(), f"{proc.name} died:\n{proc.log[-3000:]}"
        for bad in ("Traceback", "Error handling request", "Exception in callback"):
            assert bad not in proc.log, f"{proc.name} logged {bad!r}:\n{proc.log[-5000:]}"


# --- 1. the bus ---------------------------------------------------------------------------


def sample(entry: topics.Topic, root: str, services: list[str]) -> list[str]:
    """Concrete addresses of one registry entry, a parameter filled with each likely id."""
    values = {
        "service": [*services, "fuzz-service"],
        "instance": ["1"],
        "user": ["ada", "nobody"],
        "request": ["f" * 32],  # fixed: the same seed picks the same topics
        "token": ["fuzz"],
        "check": ["fuzz"],
    }
    out = [entry.pattern]
    for param in entry.params:
        out = [p.replace("{" + param + "}", v) for p in out for v in values.get(param, ["x"])]
    return [f"{root}/{p}" for p in out]


@dataclass
class BusTargets:
    root: str
    filters: dict[str, list[str]]  # service -> every filter its worker subscribes to
    topics: list[str]  # concrete topics at least one service subscribes to

    def subscribers(self, topic: str) -> list[str]:
        return [s for s, fs in self.filters.items() if any(topics.matches(f, topic) for f in fs)]


def bus_targets(root: str) -> BusTargets:
    classes = manifest.load().by_name
    filters = {name: cls.filters(root) for name, cls in classes.items()}
    names = sorted(classes)
    candidates = [a for e in topics.all_topics() for a in sample(e, root, names)]
    candidates += [f"{root}/commands/{s}/fuzz-unknown-verb" for s in names]
    candidates.append(f"{root}/events/fuzz/unregistered")
    t = BusTargets(root, filters, [])
    t.topics = sorted({c for c in candidates if t.subscribers(c)})
    return t


def hostile_topic(rnd: random.Random, targets: BusTargets, level: str) -> str:
    """A subscribed topic with one level replaced by a hostile one (if still subscribed)."""
    base = rnd.choice(targets.topics).split("/")
    base[rnd.randrange(1, len(base))] = level
    topic = "/".join(base)
    return topic if targets.subscribers(topic) else rnd.choice(targets.topics)


Key = tuple[str, str, int]  # (service, topic, size): what a letter says of what it parked


@dataclass
class Rejections:
    """Each hostile input and the letter each of its subscribers owes for it."""

    # per key, the first bytes of each input sent under it (enough to tell which input a
    # letter is for, not 100,000 payloads whole), the input's number, and which still
    # wait for their letter (positions in those lists)
    heads: dict[Key, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    inputs: dict[Key, list[int]] = field(default_factory=lambda: defaultdict(list))
    waiting: dict[Key, list[int]] = field(default_factory=lambda: defaultdict(list))
    sent: int = 0
    logged: Counter[tuple[str, str]] = field(default_factory=Counter)  # own letter topic

    def expect(self, targets: BusTargets, topic: str, payload: bytes) -> None:
        for service in targets.subscribers(topic):
            if topic == topics.DEADLETTER.address(targets.root, service=service):
                self.logged[(service, topic)] += 1  # its own letters: parked in its log only
                continue
            if topic == topics.PRESENCE_QUERY.address(targets.root) and service != letters.KEEPER:
                continue  # broadcast garbage: the keeper alone parks it, the others count it
            key = (service, topic, len(payload))
            self.waiting[key].append(len(self.heads[key]))
            self.heads[key].append(payload[:HEAD])
            self.inputs[key].append(self.sent)
        self.sent += 1

    def expected(self) -> int:
        return sum(len(h) for h in self.heads.values())

    def settle(self, key: Key, head: bytes) -> int | None:
        """The input a letter (its payload's first bytes) is for: the first one still
        waiting that was sent so; None when none waits (the letter is a second one)."""
        waiting, heads = self.waiting[key], self.heads[key]
        for at, pos in enumerate(waiting):
            if heads[pos].startswith(head):  # a letter may hold less than HEAD bytes
                del waiting[at]
                return pos
        return None

    def lost(self) -> list[tuple[int, Key, bytes]]:
        """(input, key, first bytes) of each letter still owed, in the order sent."""
        return sorted(
            (self.inputs[k][pos], k, self.heads[k][pos])
            for k, positions in self.waiting.items()
            for pos in positions
        )


@dataclass
class Letters:
    """The dead letters on a probe of ``deadletter/#``, each matched to the input it is
    for as it comes, then let go: a long run would otherwise hold every payload several
    times over."""

    probe: Probe
    rejections: Rejections
    settled: int = 0
    doubled: set[int] = field(default_factory=set)  # inputs a subscriber parked twice
    faults: list[str] = field(default_factory=list)

    def take(self) -> int:
        """Match what arrived since the last call; the number of owed letters seen."""
        prefix = f"{self.probe.root}/deadletter/"
        arrived = self.probe.messages[:]
        del self.probe.messages[: len(arrived)]
        for m in arrived:
            try:
                letter = topics.DEADLETTER.codec.decode(m.payload)
            except act.InvalidActivity:
                continue  # our own garbage on a dead-letter topic, not a service's letter
            service = m.topic[len(prefix) :]
            key = (service, letter.object.name, letter.object.size)
            if key not in self.rejections.heads:
                continue
            head = letters.kept(letter.object)[:HEAD]
            if not letter.summary:
                self.faults.append(f"{service} parked {key} without a reason")
            pos = self.rejections.settle(key, head)
            if pos is not None:
                self.settled += 1
                continue
            sent = [i for i, h in enumerate(self.rejections.heads[key]) if h.startswith(head)]
            if sent:
                self.doubled.add(self.rejections.inputs[key][sent[0]])
            else:
                self.faults.append(f"{service}'s letter for {key} is not what was sent")
        return self.settled


async def test_hostile_payloads_on_every_subscribed_topic_are_parked_and_lose_no_good_message(
    broker: TestBroker,
    root: str,
    start_service: StartService,
    service_env: dict[str, str],
    tmp_path: Path,
    seed: int,
) -> None:
    n = share("bus")
    loop = asyncio.get_running_loop()
    corpus = loop.create_task(
        draw(("bus_payloads", n), ("hostile_levels", max(1, n // 10)), seed=seed)
    )
    targets = bus_targets(root)
    env = {
        "DOVECOTE_SERVICE_TOKEN": secrets.token_urlsafe(24),
        "RESIZER_THREADS": "2",
        "LOG_LEVEL": "WARNING",  # each rejection is one warning line; nothing else
        "LOG_REPEATS": "0",  # every line, not five a minute and a count: each is read below
        "DOVECOTE_POOL_SIZE": "1",
        **NO_RATE_LIMITS,
    }
    # What the accounting of the good messages reads, and the presence; the letters come
    # on a probe of their own (``Letters``).
    probe = await Probe(broker.url, root, persistent=True).start(
        "services/+/+",
        "events/points/awarded",
        "events/image/resized",
        "users/+/notifications",
        "events/tweet/created",
    )
    sender = await Probe(broker.url, root).start("deadletter/#")
    procs = [start_service(name, **env) for name in sorted(targets.filters)]
    try:
        url = service_env["PUBLIC_URL"]
        await wait_http(f"{url}/healthz", 30)
        for proc in procs:
            await probe.wait_online(proc.name, timeout=60)
        payloads, levels = await corpus
        rnd = random.Random(seed)
        traffic = Traffic(url, probe)
        await traffic.prepare()
        storm_done = asyncio.Event()

        async def good_traffic() -> None:
            while not storm_done.is_set():
                await traffic.run(1.0, 8.0, 8.0)

        flowing = loop.create_task(good_traffic())
        rejections = Rejections()
        letters = Letters(sender, rejections)
        started = time.monotonic()
        sent_topics: Counter[str] = Counter()
        for i, payload in enumerate(payloads):
            if levels and rnd.random() < 0.1:
                topic = hostile_topic(rnd, targets, levels[i % len(levels)])
            else:
                topic = rnd.choice(targets.topics)
            rejections.expect(targets, topic, payload)
            sent_topics[topic] += 1
            sender.conn.publish(topic, payload, 1, False)
            if i % 200 == 199:  # paho's queue is bounded: let the broker take this batch
                assert await sender.conn.flush(60), "the broker stopped acknowledging"
                behind = rejections.expected() - 4_000
                await wait_until(
                    lambda b=behind: letters.take() >= b,  # type: ignore[misc]
                    120,
                    "the services to catch up",
                )
        storm_done.set()
        await flowing
        storm_s = time.monotonic() - started

        want = rejections.expected()
        with contextlib.suppress(AssertionError):  # then the rows say which inputs have none
            await wait_until(lambda: letters.take() >= want, 90, "every letter")
        accounts = await settle(traffic, probe, tmp_path / "data" / "points.sqlite3", "fuzz", 90)
        await asyncio.sleep(1.0)  # a second letter for one input would show by now
        letters.take()
        assert not letters.faults, "\n".join(letters.faults[:20])
        by_proc = {p.name: p for p in procs}
        for (service, topic), count in rejections.logged.items():
            lines = [
                line.split(f"{topic}: ", 1)[1]
                for line in by_proc[service].log.splitlines()
                if f"dead-lettered a message on {topic}: " in line
            ]
            assert len(lines) == count, (
                f"{service} logged {len(lines)} of {count} rejections on {topic}: "
                f"{sorted(Counter(r[:70] for r in lines).items())}"
            )

        lost = rejections.lost()
        inputs_lost = len({i for i, _, _ in lost})
        inputs_doubled = len(letters.doubled)
        sample_lost = [(i, k, head[:120]) for i, k, head in lost[:5]]
        print(
            f"\nbus fuzz: {len(payloads)} hostile payloads on {len(sent_topics)} topics "
            f"({len(targets.topics)} subscribed + hostile levels), {want} letters expected, "
            f"storm {storm_s:.1f} s; good: {len(traffic.uploads)} uploads, "
            f"{len(traffic.builds)} builds"
        )
        rows = [
            FaultRow(
                f"hostile inputs (fuzz): bus, {len(sent_topics)} topics, "
                f"{len(targets.filters)} services, seed {seed}",
                len(payloads),
                len(payloads) - inputs_lost,
                inputs_lost,
                inputs_doubled,
            ),
            *(
                FaultRow(
                    r.fault.replace("fuzz", "good messages amid the hostile ones"),
                    r.sent,
                    r.processed,
                    r.lost,
                    r.duplicated,
                    r.raw,
                )
                for r in accounts.rows()
            ),
        ]
        if lost:
            print(f"inputs not parked by every subscriber, e.g. (input, key, start) {sample_lost}")
        assert traffic.uploads and traffic.builds, "no good traffic flowed"
        record(*rows)
        clean_logs(procs)
    finally:
        await sender.stop()
        await probe.stop()


# --- 2. the gateway's HTTP side ------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # /users/{user}; a static prefix ends in /{file}


def gateway_routes(data: Path) -> list[Route]:
    """Every route of the gateway's real router: a route added later is fuzzed too."""
    ctx = gateway_context(Hub(), "http://x", data)
    app = create_app(ctx)
    ctx.people.close()
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        if "prefix" in info:  # a static folder
            template = str(info["prefix"]).rstrip("/") + "/{file}"
        else:
            template = route.resource.canonical if route.resource is not None else "/"
        out.append(Route(route.method, template))
    return sorted(set(out), key=lambda r: (r.template, r.method))


@dataclass
class Gateway:
    url: str
    token: str  # the service credential (thumbnails)
    person_token: str  # Ada's API token
    browser: dict[str, str]  # Grace's signed-in page: her session cookie and Origin
    image_id: str
    proc: ServiceProcess


@pytest.fixture
async def gateway(
    start_service: StartService, service_env: dict[str, str], probe: Probe
) -> Gateway:
    token = secrets.token_urlsafe(24)
    # The notifier answers the inbox a signed-in page or GET /api/inbox asks for (without
    # it those are a 503 after INBOX_TIMEOUT, which is right, but not what is fuzzed here).
    start_service("notifier", LOG_LEVEL="WARNING")
    proc = start_service(
        "gateway", DOVECOTE_SERVICE_TOKEN=token, LOG_LEVEL="WARNING", **NO_RATE_LIMITS
    )
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz", 30)
    await probe.wait_online("notifier")
    person_token = await token_for(url, "ada", "fuzz")
    async with await signed_in(url, "grace") as http:
        browser = {"Cookie": cookie_header(http), "Origin": url}
    form = aiohttp.FormData()
    form.add_field("file", photo(16, 12, fmt="PNG"), filename="a.png", content_type="image/png")
    bearer = {"Authorization": f"Bearer {person_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/api/images", data=form, headers=bearer) as r,
    ):
        assert r.status == 201, await r.text()
        image_id = (await r.json())["id"]
    return Gateway(url, token, person_token, browser, image_id, proc)


def fill(template: str, params: list[str], rnd: random.Random, gw: Gateway) -> str:
    """The route's path with hostile parameters; now and then a real one (to get deeper)."""
    real = {
        "user": "ada",
        "id": gw.image_id,
        "size": "128",
        "file": "dashboard.js",
        "token": gw.person_token.split("_")[1],
    }
    path, i = template, 0
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        name = path[start + 1 : end]
        value = quote(real.get(name, "x"), safe="") if rnd.random() < 0.3 else params[i % 3]
        path, i = path[:start] + value + path[end + 1 :], i + 1
    return path


@dataclass
class Answers:
    statuses: Counter[int] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)  # 5xx, hangs, 4xx without a reason

    def check(self, what: str, status: int, body: bytes, head: bool = False) -> None:
        self.statuses[status] += 1
        if status >= 500:
            self.bad.append(f"{status} for {what}: {body[:200]!r}")
        elif status >= 400 and not head and not body.strip():
            self.bad.append(f"{status} without a reason for {what}")


async def send_http(
    http: aiohttp.ClientSession,
    gw: Gateway,
    routes: list[Route],
    req: dict[str, Any],
    rnd: random.Random,
    answers: Answers,
) -> None:
    route = routes[req["route"] % len(routes)]
    method = req["method"] or route.method
    path = fill(route.template, req["params"], rnd, gw) + req["suffix"]
    query = urlencode(req["query"], quote_via=quote)
    url = URL(gw.url + path + ("?" + query if query else ""), encoded=True)
    headers = {}
    for name, key in (
        ("Content-Type", "content_type"),
        ("Origin", "origin"),
        ("Cookie", "cookie"),
        ("Host", "host"),
    ):
        if req[key] is not None:
            headers[name] = req[key]
    # Now and then a real credential, past the door and into the checks behind it.
    door = rnd.random()
    if req["authorization"] is not None:
        headers["Authorization"] = req["authorization"]
    elif door < 0.2:
        headers["Authorization"] = f"Bearer {gw.token}"  # the service credential
    elif door < 0.4:
        headers["Authorization"] = f"Bearer {gw.person_token}"  # a person's script
    elif door < 0.6:
        headers.update(gw.browser)  # a person's signed-in page
    what = f"{method} {str(url)[len(gw.url) :][:150]} {headers}"
    try:
        async with http.request(
            method,
            url,
            data=req["body"],
            headers=headers,
            skip_auto_headers=["Content-Type"],
            allow_redirects=False,
        ) as r:
            body = await r.read()
            answers.check(what, r.status, body, method == "HEAD")
    except TimeoutError:
        answers.bad.append(f"no answer in 10 s to {what}")
    except aiohttp.ClientResponseError as exc:  # an answer the client itself cannot parse
        answers.check(what, exc.status, exc.message.encode())
    except aiohttp.ClientConnectionError as exc:
        # The server may close on a request it cannot read; but it must not vanish.
        answers.statuses[0] += 1
        if not isinstance(exc, aiohttp.ServerDisconnectedError):
            answers.bad.append(f"{exc!r} for {what}")


async def send_raw(port: int, data: bytes, answers: Answers) -> None:
    """Bytes straight onto the socket: an answer, if any, is an HTTP status, never a 5xx."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        try:  # a complete request is answered in milliseconds
            reply = await asyncio.wait_for(reader.read(65536), 1)
        except TimeoutError:  # the server waits for the rest: none comes, it must close
            writer.write_eof()
            reply = await asyncio.wait_for(reader.read(), 10)
    except TimeoutError:
        answers.bad.append(f"no answer and no close in 10 s to raw {data[:120]!r}")
        return
    except ConnectionResetError:
        reply = b""
    finally:
        writer.close()
    if not reply:
        answers.statuses[0] += 1  # closed without a word: refused, nothing half-done
        return
    head, _, body = reply.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if not parts[0].startswith(b"HTTP/1.") or len(parts) < 2 or not parts[1].isdigit():
        answers.bad.append(f"not an HTTP answer to raw {data[:120]!r}: {reply[:120]!r}")
        return
    answers.check(f"raw {data[:120]!r}", int(parts[1]), body, data.startswith(b"HEAD "))


async def test_hostile_requests_on_every_gateway_route_get_a_4xx_with_a_reason(
    gateway: Gateway, seed: int, tmp_path: Path
) -> None:
    n = share("http")
    raw_n = max(1, n // 6)
    requests_, raws = await draw(("http_requests", n - raw_n), ("raw_requests", raw_n), seed=seed)
    routes = gateway_routes(tmp_path)
    assert len(routes) >= 10, routes  # the router really was read
    rnd = random.Random(seed)
    answers, raw_answers = Answers(), Answers()
    busy, raw_busy = asyncio.Semaphore(16), asyncio.Semaphore(64)
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(req: dict[str, Any]) -> None:
            async with busy:
                await send_http(http, gateway, routes, req, rnd, answers)

        async def raw(data: bytes) -> None:
            async with raw_busy:
                await send_raw(int(URL(gateway.url).port or 80), data, raw_answers)

        await asyncio.gather(*(one(r) for r in requests_), *(raw(d) for d in raws))
        took = time.monotonic() - started
        async with http.get(f"{gateway.url}/healthz") as r:
            assert r.status == 200, "the gateway stopped answering"
    print(
        f"\nHTTP fuzz: {len(requests_)} requests on {len(routes)} routes, statuses "
        f"{dict(sorted(answers.statuses.items()))}; {len(raws)} raw, statuses "
        f"{dict(sorted(raw_answers.statuses.items()))} (0: closed); {took:.1f} s"
    )
    bad = answers.bad + raw_answers.bad
    print("\n".join(bad[:30]))
    sent = len(requests_) + len(raws)
    record(
        FaultRow(
            f"hostile inputs (fuzz): HTTP, {len(routes)} routes + raw bytes, seed {seed}",
            sent,
            sent - len(bad),
            len(bad),
            0,
        )
    )
    assert not bad, "\n".join(bad[:20])
    clean_logs([gateway.proc])


# --- 3. the websocket -----------------------------------------------------------------------


async def next_reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | None:
    """The gateway's answer to the last frame, past live bus frames; None when closed."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), 10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        frame = orjson.loads(msg.data)
        if "topic" not in frame and frame.get("type") != "hello":
            return dict(frame)


async def test_hostile_websocket_frames_get_error_frames_and_everyone_keeps_receiving(
    gateway: Gateway, probe: Probe, seed: int
) -> None:
    n = share("ws")
    connects_n = max(1, n // 20)
    connects, frames = await draw(
        ("ws_connects", connects_n), ("ws_frames", n - connects_n), seed=seed
    )
    ws_url = gateway.url.replace("http", "ws", 1) + "/ws"
    await probe.wait_online("gateway")
    outcomes: Counter[str] = Counter()
    bad: list[str] = []
    ticks: list[str] = []
    got_ticks: Counter[str] = Counter()
    stop = asyncio.Event()
    started = time.monotonic()

    async with aiohttp.ClientSession() as http:

        async def bystander(ready: asyncio.Event) -> None:
            async with http.ws_connect(ws_url) as ws:
                ready.set()
                async for msg in ws:
                    frame = orjson.loads(msg.data)
                    if frame.get("topic", "").endswith("/events/fuzz/tick"):
                        got_ticks[frame["activity"]["id"]] += 1

        async def ticker() -> None:
            while not stop.is_set():
                tick = act.new("Create", act.service("fuzz"), {"type": "Note"})
                probe.publish("events/fuzz/tick", tick)
                ticks.append(tick["id"])
                await asyncio.sleep(0.02)

        async def fuzzer(share_: list[tuple[str, bytes]]) -> None:
            # A signed-in page's socket: its frames reach the command checks.
            ws = await http.ws_connect(ws_url, headers=gateway.browser)
            try:
                for kind, data in share_:
                    what = f"{kind} frame {data[:100]!r}"
                    if kind == "binary":
                        await ws.send_bytes(data)
                    else:
                        await ws.send_str(data.decode())
                    try:
                        reply = await next_reply(ws)
                    except TimeoutError:
                        bad.append(f"no answer in 10 s to {what}")
                        continue
                    if reply is None:  # closed: only a frame over the limit may do that
                        code = ws.close_code
                        # 1009 (too big), or 1006 when the close frame is lost to the TCP
                        # reset of the frame's unread rest: either way the page reconnects.
                        if len(data) > hostile.WS_LIMIT and code in (1009, 1006):
                            outcomes[f"frame over the limit: closed {code}"] += 1
                        else:
                            bad.append(f"socket closed ({code}) after {what}")
                        ws = await http.ws_connect(ws_url, headers=gateway.browser)
                    elif reply.get("type") == "error" and reply.get("error"):
                        outcomes["error frame"] += 1
                    else:
                        bad.append(f"{reply} for {what}")
                await ws.send_str("{}")  # still open, still answering
                assert (await next_reply(ws) or {}).get("type") == "error"
            finally:
                await ws.close()

        async def connect(params: dict[str, Any]) -> None:
            query = urlencode(params["query"], quote_via=quote)
            headers = {"Origin": params["origin"]} if params["origin"] is not None else {}
            if params["cookie"] is not None:
                headers["Cookie"] = params["cookie"]
            what = f"connect ?{query[:100]} {headers}"
            url = URL(ws_url + ("?" + query if query else ""), encoded=True)
            try:
                async with http.ws_connect(url, headers=headers) as ws:
                    hello = orjson.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                    if hello.get("type") == "cannot-resume":  # a cursor naming no frame
                        outcomes["connect: cannot-resume, then hello"] += 1
                        hello = orjson.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                    if hello.get("type") == "hello":
                        outcomes["connect: hello (parameters ignored)"] += 1
                    else:
                        bad.append(f"{hello} for {what}")
            except aiohttp.WSServerHandshakeError as exc:
                if 400 <= exc.status < 500:
                    outcomes[f"connect: {exc.status}"] += 1
                else:
                    bad.append(f"{exc.status} for {what}")
            except TimeoutError:
                bad.append(f"no hello in 10 s after {what}")

        ready = asyncio.Event()
        watching = asyncio.create_task(bystander(ready))
        await asyncio.wait_for(ready.wait(), 10)
        ticking = asyncio.create_task(ticker())
        lanes = 4
        await asyncio.gather(
            *(fuzzer(frames[i::lanes]) for i in range(lanes)), *(connect(c) for c in connects)
        )
        stop.set()
        await ticking
        took = time.monotonic() - started
        await wait_until(lambda: set(ticks) <= set(got_ticks), 15, "every tick to the bystander")
        await asyncio.sleep(0.5)
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching

    print(
        f"\nwebsocket fuzz: {len(frames)} frames, {len(connects)} connects: "
        f"{dict(outcomes)}; bystander got {len(got_ticks)} of {len(ticks)} live frames; "
        f"{took:.1f} s"
    )
    print("\n".join(bad[:30]))
    sent = len(frames) + len(connects)
    record(
        FaultRow(
            f"hostile inputs (fuzz): websocket frames and connects, seed {seed}",
            sent,
            sent - len(bad),
            len(bad),
            0,
        ),
        FaultRow(
            "live frames to a bystander socket during the websocket fuzz",
            len(ticks),
            len(set(ticks) & set(got_ticks)),
            len(set(ticks) - set(got_ticks)),
            sum(c - 1 for c in got_ticks.values() if c > 1),
        ),
    )
    assert not bad, "\n".join(bad[:20])
    clean_logs([gateway.proc])
