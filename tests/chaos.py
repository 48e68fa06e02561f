"""The fault suite's harness: real traffic in, faults injected, every effect accounted for.

A pytest plugin (``tests/conftest.py`` loads it) with

- ``--chaos=short|long`` (or ``DOVECOTE_CHAOS``): short in ``make test``, long in
  ``make chaos`` (more time, more traffic, more kills);
- the fault table: each fault test adds rows (fault injected | activities sent | processed |
  lost | duplicated in effect | raw redeliveries absorbed), printed in pytest's terminal
  summary and written to ``.dovecote/chaos/<scale>.md``;
- ``Traffic``: uploads through the gateway's real HTTP API and build results on the bus;
- ``account()``: what each service was asked to do against what the real stores and the bus
  say it did: the points ledger (SQLite), every image's thumbnails (GET from the gateway),
  and each follower's notifications and each tweet as seen on the bus by a probe with a
  persistent session. "Duplicated in effect" counts distinct effects beyond one per cause
  (two different notification ids for one follower and one upload, an award counted twice);
  "raw redeliveries" counts copies with the same id, which subscribers skip as seen.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import random
import sqlite3
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from sqlalchemy import text

from dovecote import activity as act
from dovecote import topics
from dovecote.mqtt import Message
from dovecote.project import PROJECT
from dovecote.store import Place
from dovecote.tools import manifest
from dovecote_testing.gateway import token_for
from dovecote_testing.plugin import Probe, ServiceProcess
from services.points.ledger import Ledger
from tests.imagefiles import photo

REPORT_DIR = PROJECT / ".dovecote" / "chaos"
USERS = ("ada", "grace", "linus")
# Load and fault runs measure what the federation does with everything it accepts: the
# gateway's rate limits (which would turn most of the load away with 429) are off there.
NO_RATE_LIMITS = {
    name: "0"
    for name in (
        "RATE_UPLOADS_PERSON",
        "RATE_UPLOADS_ADDRESS",
        "RATE_COMMANDS_PERSON",
        "RATE_COMMANDS_ADDRESS",
        "RATE_SIGNIN_ADDRESS",
    )
}


@dataclass(frozen=True)
class Scale:
    name: str
    seconds: float  # how long traffic flows
    uploads_per_s: float
    builds_per_s: float
    kill_every: float  # seconds between two kill -9s
    settle: float  # seconds allowed, after the traffic, for every effect to show
    node_kills: int  # cluster nodes killed in turn (tests/test_cluster.py), each restarted


SCALES = {
    "short": Scale("short", 12.0, 12.0, 12.0, 1.0, 90.0, 3),
    "long": Scale("long", 150.0, 15.0, 15.0, 0.7, 300.0, 12),
}


@dataclass
class FaultRow:
    fault: str
    sent: int
    processed: int
    lost: int
    duplicated: int
    raw: int | None = None  # same-id copies delivered again, absorbed by deduplication

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


@dataclass
class FailoverRow:
    """How long the workers a fault cut off took to be back (first Join after it)."""

    fault: str
    workers: int  # distinct workers cut off
    failovers: int  # times one was cut off and came back
    median_ms: float
    p99_ms: float
    max_ms: float


# Rows recorded in this process and not yet attached to a test report. Reports carry them to
# the process that prints the table: the same one, or pytest-xdist's controller.
_PENDING: list[FaultRow] = []
TABLE: list[FaultRow] = []
_PENDING_FAILOVER: list[FailoverRow] = []
FAILOVERS: list[FailoverRow] = []


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def record_failover(fault: str, seconds: list[float], workers: int | None = None) -> None:
    """Add a failover row: times in seconds, one per failover (``workers``: how many
    distinct workers they were, default one each)."""
    assert seconds, "no worker failed over"
    _PENDING_FAILOVER.append(
        FailoverRow(
            fault,
            len(seconds) if workers is None else workers,
            len(seconds),
            round(statistics.median(seconds) * 1000),
            round(percentile(seconds, 0.99) * 1000),
            round(max(seconds) * 1000),
        )
    )


def render_failovers(rows: list[FailoverRow]) -> str:
    lines = [
        "| fault | workers cut off | failovers | median | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.fault} | {r.workers} | {r.failovers} | {r.median_ms:.0f} ms | {r.p99_ms:.0f} ms "
        f"| {r.max_ms:.0f} ms |"
        for r in rows
    ]
    return "\n".join(lines)


def record(*rows: FaultRow) -> None:
    """Add rows to the table, then fail the test if any shows a loss or a duplicate."""
    _PENDING.extend(rows)
    bad = [r for r in rows if not r.ok]
    assert not bad, "\n" + render(bad)


def render(rows: list[FaultRow]) -> str:
    head = (
        "| fault injected | activities sent | processed | lost | duplicated in effect "
        "| raw redeliveries (absorbed) |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        raw = "n/a" if r.raw is None else str(r.raw)
        lines.append(
            f"| {r.fault} | {r.sent} | {r.processed} | {r.lost} | {r.duplicated} | {raw} |"
        )
    return "\n".join(lines)


# --- the pytest plugin -----------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos",
        choices=sorted(SCALES),
        default=os.environ.get("DOVECOTE_CHAOS", "short"),
        help="size of the fault suite: short (make test) or long (make chaos)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: the fault suite (kills, restarts, poison)")
    config.addinivalue_line(
        "markers", "long_chaos: only in the long fault suite (make chaos), deselected otherwise"
    )
    # `make chaos` selects "chaos or fuzz": known here even where no fuzz test exists yet.
    config.addinivalue_line("markers", "fuzz: the hostile-input fuzz run (FUZZ_EXAMPLES)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A ``long_chaos`` test (one that starts a cluster of its own, say) runs in ``make
    chaos`` only: in ``make test`` it is deselected, and the summary counts it as such."""
    if config.getoption("chaos") == "long":
        return
    kept = [item for item in items if item.get_closest_marker("long_chaos") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept


@pytest.fixture
def scale(request: pytest.FixtureRequest) -> Scale:
    return SCALES[request.config.getoption("chaos")]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    if _PENDING:
        report = outcome.get_result()
        report.user_properties.append(("fault_rows", [asdict(r) for r in _PENDING]))
        _PENDING.clear()
    if _PENDING_FAILOVER:
        report = outcome.get_result()
        report.user_properties.append(("failover_rows", [asdict(r) for r in _PENDING_FAILOVER]))
        _PENDING_FAILOVER.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "fault_rows":
            rows: list[dict[str, Any]] = value  # type: ignore[assignment]
            TABLE.extend(FaultRow(**row) for row in rows)
        elif name == "failover_rows":
            found: list[dict[str, Any]] = value  # type: ignore[assignment]
            FAILOVERS.extend(FailoverRow(**row) for row in found)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not (TABLE or FAILOVERS) or hasattr(config, "workerinput"):  # xdist: the controller
        return
    name = config.getoption("chaos")
    table = render(TABLE)
    if FAILOVERS:
        table += "\n\n" + render_failovers(FAILOVERS)
    terminalreporter.write_sep("=", f"fault suite ({name} run)")
    terminalreporter.write_line(table)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"{name}.md"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    path.write_text(f"Fault suite, {name} run, {stamp}\n\n{table}\n")
    terminalreporter.write_line(f"(written to {path})")


# --- traffic ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    activity: str  # the Create Image's id, from the 201
    image: str  # the image's id
    url: str
    user: str


@dataclass(frozen=True)
class BuildDone:
    activity: str
    user: str


@dataclass
class Traffic:
    """Uploads through the gateway's HTTP API and build results on the bus, at a steady rate.

    Only what the system accepted counts as sent: an upload answered 201 (one refused
    while the gateway is down was never promised), a build result the probe published.
    """

    url: str
    probe: Probe
    followers: dict[str, list[str]] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    builds: list[BuildDone] = field(default_factory=list)
    refused: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # each refused upload's answer
    tokens: dict[str, str] = field(default_factory=dict)
    on_201: Callable[[Upload], None] | None = None
    _images: list[bytes] = field(default_factory=list)

    async def prepare(self) -> None:
        """Each person's API token (as a script would have), and their followers."""
        self.tokens = {user: await token_for(self.url, user, "chaos") for user in USERS}
        async with aiohttp.ClientSession() as http:
            for user in USERS:
                async with http.get(f"{self.url}/users/{user}/followers") as r:
                    body = orjson.loads(await r.read())
                self.followers[user] = [p["preferredUsername"] for p in body["items"]]
        self._images = [photo(16, 12, seed=s, fmt="PNG") for s in range(8)]  # tiny: fast

    def person(self, user: str) -> dict[str, Any]:
        base = f"{self.url}/users/{user}"
        return {
            "type": "Person",
            "id": base,
            "name": user.title(),
            "preferredUsername": user,
            "followers": f"{base}/followers",
        }

    async def run(
        self,
        seconds: float,
        uploads_per_s: float,
        builds_per_s: float,
        until: asyncio.Event | None = None,
    ) -> None:
        """For ``seconds``, or until ``until`` is set."""
        rnd = random.Random(6)
        busy = asyncio.Semaphore(6)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            loop = asyncio.get_running_loop()
            start, n_up, n_build = loop.time(), 0, 0
            while (now := loop.time() - start) < seconds and not (until and until.is_set()):
                while n_up < now * uploads_per_s:
                    n_up += 1
                    user = rnd.choice(USERS)
                    await busy.acquire()
                    task = loop.create_task(self._upload(http, user, n_up, busy))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                while n_build < now * builds_per_s:
                    n_build += 1
                    self._build(rnd.choice(USERS), n_build)
                await asyncio.sleep(0.02)
            if tasks:
                await asyncio.wait(set(tasks))

    async def _upload(
        self, http: aiohttp.ClientSession, user: str, n: int, busy: asyncio.Semaphore
    ) -> None:
        form = aiohttp.FormData()
        data = self._images[n % len(self._images)]
        form.add_field("file", io.BytesIO(data), filename=f"p{n}.png", content_type="image/png")
        form.add_field("title", f"chaos {n}")
        try:
            bearer = {"Authorization": f"Bearer {self.tokens[user]}"}
            async with http.post(f"{self.url}/api/images", data=form, headers=bearer) as r:
                body = await r.read()
                if r.status != 201:
                    self.refused += 1
                    self.statuses[r.status] += 1
                    return
            got = orjson.loads(body)
            upload = Upload(got["activity"], got["id"], got["url"], user)
            self.uploads.append(upload)
            if self.on_201 is not None:
                self.on_201(upload)
        except (aiohttp.ClientError, TimeoutError):
            self.refused += 1  # the gateway was down: nothing was promised
        finally:
            busy.release()

    def _build(self, user: str, n: int) -> None:
        requester = self.person(user)
        build = {
            "type": "Build",
            "id": act.new_id(),
            "name": f"Build #{n}",
            "state": "succeeded",
            "progress": 100,
            "attributedTo": requester,
        }
        done = act.new("Update", act.service("builder"), build, context=act.new_id(), summary="ok")
        self.probe.publish("events/build/succeeded", done)
        self.builds.append(BuildDone(done["id"], user))

    # --- what should have happened --------------------------------------------------------

    def expected_awards(self) -> dict[tuple[str, str], tuple[str, int]]:
        """(cause, rule) -> (person URL, points)."""
        out = {(u.activity, "upload"): (f"{self.url}/users/{u.user}", 10) for u in self.uploads}
        for b in self.builds:
            out[(b.activity, "build")] = (f"{self.url}/users/{b.user}", 5)
        return out

    def expected_notifications(self) -> set[tuple[str, str]]:
        """(cause, recipient) pairs: followers of an uploader; a build's requester and theirs."""
        pairs = {(u.activity, f) for u in self.uploads for f in self.followers[u.user]}
        for b in self.builds:
            pairs |= {(b.activity, r) for r in [b.user, *self.followers[b.user]]}
        return pairs


# --- what did happen ----------------------------------------------------------------------


def _valid(probe: Probe, m: Message) -> bool:
    """A message its topic's payload type accepts: garbage on the bus (the fuzz run
    publishes it on these very topics) is nobody's effect."""
    if not m.payload:
        return False
    found = topics.lookup(probe.root, m.topic)
    if found is None:
        return False
    try:
        found[0].codec.decode(m.payload)
    except act.InvalidActivity:
        return False
    return True


def _by_id(probe: Probe, rel_topic_suffix: str) -> list[dict[str, Any]]:
    out = []
    for m in probe.messages:
        if m.topic.endswith(rel_topic_suffix) and _valid(probe, m):
            out.append(orjson.loads(m.payload))
    return out


def ledger_rows(db: Path | Place) -> list[tuple[str, str, str, int]]:
    """The points ledger's awards: a SQLite file, or the ledger's place (PostgreSQL)."""
    if isinstance(db, Place):
        ledger = Ledger(db).open()
        try:
            with ledger.db.transaction() as pg:
                rows = pg.execute(text("SELECT cause, rule, person, points FROM awards"))
                return [(r[0], r[1], r[2], int(r[3])) for r in rows]
        finally:
            ledger.close()
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    try:
        return list(conn.execute("SELECT cause, rule, person, points FROM awards"))
    finally:
        conn.close()


def effect_row(fault: str, expected: set[Any], seen: dict[Any, set[str]], copies: int) -> FaultRow:
    """A row for one kind of effect. ``seen`` maps each cause to the distinct activity ids of
    its effect (more than one: duplicated in effect); ``copies`` counts every copy delivered
    (beyond the distinct ids: raw redeliveries)."""
    done = expected & set(seen)
    return FaultRow(
        fault,
        len(expected),
        len(done),
        len(expected - done),
        sum(len(seen[cause]) - 1 for cause in done),
        copies - sum(len(ids) for ids in seen.values()),
    )


@dataclass
class Accounts:
    awards: FaultRow
    thumbnails: FaultRow
    notifications: FaultRow
    tweets: FaultRow

    def rows(self) -> list[FaultRow]:
        return [self.awards, self.thumbnails, self.notifications, self.tweets]

    @property
    def complete(self) -> bool:
        return all(r.lost == 0 for r in self.rows())


def account_bus(traffic: Traffic, probe: Probe, points_db: Path | Place, fault: str) -> Accounts:
    """Everything but the thumbnails' GETs (cheap: polled while waiting)."""
    manifest.load()  # the tweeter's topic, for ``_valid``
    # Points: the ledger is the truth. Its key (cause, rule) keeps an award single; the bus
    # shows whether the service announced one award twice under different ids.
    expected = traffic.expected_awards()
    rows = ledger_rows(points_db)
    counted = Counter((c, r) for c, r, _, _ in rows if (c, r) in expected)
    awarded: dict[tuple[str, str], set[str]] = defaultdict(set)
    for a in _by_id(probe, "/events/points/awarded"):
        awarded[(a["object"]["cause"], a["object"]["rule"])].add(a["id"])
    awards = FaultRow(
        f"{fault}: points awarded",
        len(expected),
        len(counted),
        len(expected) - len(counted),
        sum(n - 1 for n in counted.values()) + sum(len(i) - 1 for i in awarded.values()),
        None,
    )

    # Thumbnails, as announced on the bus (the GETs come in ``account_thumbnails``).
    resized: dict[str, set[str]] = defaultdict(set)
    copies = 0
    for a in _by_id(probe, "/events/image/resized"):
        resized[a["object"]["url"]].add(a["id"])
        copies += 1
    thumbs = effect_row(f"{fault}: thumbnails", {u.url for u in traffic.uploads}, resized, copies)

    # Notifications: one per (cause, follower); distinct ids beyond one are duplicates.
    pairs = traffic.expected_notifications()
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    copies = 0
    for m in probe.messages:
        if m.topic.endswith("/notifications") and _valid(probe, m):
            note = orjson.loads(m.payload)
            seen[(note["object"]["id"], m.topic.split("/")[-2])].add(note["id"])
            copies += 1
    notes = effect_row(f"{fault}: notifications", pairs, seen, copies)

    # Tweets: one per upload.
    tweeted: dict[str, set[str]] = defaultdict(set)
    copies = 0
    for a in _by_id(probe, "/events/tweet/created"):
        tweeted[a["object"]["inReplyTo"]].add(a["id"])
        copies += 1
    tweets = effect_row(f"{fault}: tweets", {u.activity for u in traffic.uploads}, tweeted, copies)
    return Accounts(awards, thumbs, notes, tweets)


async def account_thumbnails(traffic: Traffic, row: FaultRow, sizes: int = 2) -> FaultRow:
    """GET every image's thumbnails from the gateway: ``processed`` = images with all of them."""
    busy = asyncio.Semaphore(8)

    async def whole(http: aiohttp.ClientSession, upload: Upload) -> bool:
        async with busy:
            async with http.get(f"{upload.url}/thumbnails") as r:
                if r.status != 200:
                    return False
                listed = orjson.loads(await r.read())["items"]
            if len(listed) != sizes:
                return False
            for link in listed:
                async with http.get(link["href"]) as r:
                    if r.status != 200 or not r.content_type.startswith("image/"):
                        return False
                    await r.read()
            return True

    async with aiohttp.ClientSession() as http:
        ok = await asyncio.gather(*(whole(http, u) for u in traffic.uploads))
    stored = sum(ok)
    return FaultRow(row.fault, row.sent, stored, row.sent - stored, row.duplicated, row.raw)


async def settle(
    traffic: Traffic,
    probe: Probe,
    points_db: Path | Place,
    fault: str,
    timeout: float,
    tweets: bool = True,
) -> Accounts:
    """Wait until every effect shows (or the time is up), then account. ``tweets=False``:
    no tweeter runs, so none is waited for."""
    deadline = time.monotonic() + timeout
    while True:
        accounts = account_bus(traffic, probe, points_db, fault)
        wanted = accounts.rows() if tweets else accounts.rows()[:3]
        if all(r.lost == 0 for r in wanted) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # a late duplicate would show by now
    accounts = account_bus(traffic, probe, points_db, fault)
    accounts.thumbnails = await account_thumbnails(traffic, accounts.thumbnails)
    return accounts


# --- faults --------------------------------------------------------------------------------


@dataclass
class Killer:
    """kill -9 one service after another, round robin, and start a new process at once."""

    procs: dict[str, ServiceProcess]
    start: Callable[[str], ServiceProcess]
    every: float
    kills: Counter[str] = field(default_factory=Counter)

    async def run(self, stop: asyncio.Event) -> None:
        rnd = random.Random(9)
        names = sorted(self.procs)
        n = 0
        while not stop.is_set():
            with_jitter = self.every * rnd.uniform(0.6, 1.4)
            try:
                await asyncio.wait_for(stop.wait(), with_jitter)
                return
            except TimeoutError:
                pass
            name = names[n % len(names)]
            n += 1
            self.procs[name].kill()
            self.kills[name] += 1
            await asyncio.sleep(rnd.uniform(0.0, 0.3))
            self.procs[name] = self.start(name)

    def describe(self) -> str:
        return (
            f"kill -9 ×{sum(self.kills.values())} ("
            + ", ".join(f"{k} ×{v}" for k, v in sorted(self.kills.items()))
            + ")"
        )
