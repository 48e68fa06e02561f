"""Past one machine: the federation on a three-node RabbitMQ cluster
(``python -m dovecote_testing.cluster``).

One cluster per test session (the ``cluster`` fixture, ~35 s to boot on two cores); the
tests are marked ``cluster`` and run on one pytest-xdist worker. Each test has its own topic
root, so they share the cluster without seeing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from dovecote import activity as act
from dovecote.mqtt import Message
from dovecote.project import PROJECT
from dovecote_testing import clusterctl
from dovecote_testing.cluster import NODES, PrivateCluster
from dovecote_testing.plugin import Probe, ServiceProcess, environment, wait_until
from tests.chaos import NO_RATE_LIMITS, Scale, Traffic, record, record_failover, settle
from tests.fixtures import wait_http
from tests.services.tally.ledger import open_ledger

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]


def node_url(cluster: PrivateCluster, names: str) -> str:
    """``MQTT_URL`` naming some nodes, in order: ``"a"``, ``"cab"``."""
    return "mqtt://" + ",".join(f"{cluster.node(n).host}:{cluster.node(n).port}" for n in names)


def amqp_url(cluster: PrivateCluster, names: str) -> str:
    first = cluster.node(names[0])
    hosts = ",".join(f"{cluster.node(n).host}:{cluster.node(n).amqp_port}" for n in names)
    return first.amqp_url.replace(f"{first.host}:{first.amqp_port}", hosts)


@dataclass
class OnCluster:
    cluster: PrivateCluster
    root: str
    folder: Path
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    procs: list[ServiceProcess] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    shared: dict[str, str] = field(default_factory=dict)  # one gateway URL, one data folder

    def env(self, nodes: str, **extra: str) -> dict[str, str]:
        env = environment(
            node_url(self.cluster, nodes), self.root, self.folder, amqp_url(self.cluster, nodes)
        )
        if not self.shared:
            keep = ("PORT", "PUBLIC_URL", "DOVECOTE_DATA_DIR", "DOVECOTE_SESSION_KEY")
            self.shared = {k: env[k] for k in keep}
        return {**env, **self.shared, "DOVECOTE_SERVICE_TOKEN": self.token, **extra}

    def start(
        self, name: str, nodes: str, package: str = "services", **extra: str
    ) -> ServiceProcess:
        proc = ServiceProcess(name, self.env(nodes, **extra), self.folder, package).start()
        self.procs.append(proc)
        return proc

    async def probe(self, node: str, *exact: str, topic_filter: str = "#") -> Probe:
        p = await Probe(node_url(self.cluster, node), self.root).start(topic_filter, *exact)
        self.probes.append(p)
        return p

    @property
    def public_url(self) -> str:
        return self.shared["PUBLIC_URL"]


@pytest.fixture
async def on_cluster(
    cluster: PrivateCluster, root: str, tmp_path: Path
) -> AsyncIterator[OnCluster]:
    c = OnCluster(cluster, root, tmp_path)
    yield c
    for p in c.probes:
        await p.stop()
    for proc in reversed(c.procs):
        code = proc.stop()
        tail = "\n".join(proc.log.splitlines()[-30:])
        print(f"--- {proc.name}.{proc.instance} (exit code {code}):\n{tail}")
    # A node left down (a test that failed, or one that ends with a kill) is started again
    # by the next test on the cluster (the plugin's _whole_cluster), not here.


ADA = "ada"


def person(base: str, user: str) -> dict[str, Any]:
    return {
        "type": "Person",
        "id": f"{base}/users/{user}",
        "name": user.title(),
        "preferredUsername": user,
    }


async def api_state(url: str) -> dict[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/state") as r:
        frames = orjson.loads(await r.read())
    return {f["topic"]: f["activity"] for f in frames}


# --- the cluster itself ---------------------------------------------------------------------


def test_three_nodes_one_cluster_persistent_sessions_on_quorum_queues(
    cluster: PrivateCluster,
) -> None:
    assert cluster.running_nodes() == {n.name for n in cluster.nodes}
    assert len({n.port for n in cluster.nodes}) == 3
    assert len({n.directory for n in cluster.nodes}) == 3
    conf = cluster.node("b").directory / "rabbitmq.conf"
    assert "mqtt.durable_queue_type = quorum" in conf.read_text()


# --- pools on the cluster ----------------------------------------------------------------------


async def test_a_pool_spread_over_three_nodes_handles_each_item_once_and_shares_the_load(
    on_cluster: OnCluster,
) -> None:
    """Three tally workers, each on another node: the pool's quorum queue gives each item to
    one of them, and each gets a share. Sessions and the pool's queue are quorum queues."""
    c = on_cluster
    ledger = c.folder / "tally.sqlite"
    for n, nodes in (("1", "a"), ("2", "b"), ("3", "c")):
        c.start(
            "tally",
            nodes,
            package="tests.services",
            DOVECOTE_INSTANCE=n,
            TALLY_DB=str(ledger),
            TALLY_WORK_SECONDS="0.01",
        )
    on_b = await c.probe("b")
    for n in ("1", "2", "3"):
        await on_b.wait_online("tally", n, timeout=60)
    sent = set()
    for _ in range(300):
        item = act.new("Create", person(c.public_url, ADA), {"type": "Note"})
        sent.add(item["id"])
        on_b.publish("events/tally/item", item)

    def rows() -> list[tuple[str, str, int]]:
        db = open_ledger(str(ledger))
        try:
            return list(db.execute("SELECT id, worker, runs FROM tally"))
        finally:
            db.close()

    await wait_until(lambda: len(rows()) == len(sent), 60, "every item handled")
    await asyncio.sleep(1.0)  # a second delivery would show by now
    got = rows()
    assert {r[0] for r in got} == sent and all(r[2] == 1 for r in got)
    shares = Counter(r[1] for r in got)
    assert set(shares) == {"1", "2", "3"} and min(shares.values()) >= 30, shares
    queues = dict(
        line.split("\t")[:2]
        for line in c.cluster.node("a")
        .rabbitmqctl("list_queues", "name", "type", "--no-table-headers", "--quiet")
        .splitlines()
        if c.root in line
    )
    assert queues[f"dovecote-pool.{c.root}.tally"] == "quorum"
    assert queues[f"mqtt-subscription-{c.root}-tally-1qos1"] == "quorum"


# --- state is right on every node ------------------------------------------------------------


async def test_a_gateway_on_node_c_shows_the_state_published_via_node_a(
    on_cluster: OnCluster,
) -> None:
    """RabbitMQ keeps retained messages per node: what the builder and points published
    via node A is not retained on node C. The gateway there asks (services/query) and the
    owners republish: its dashboard shows the build, the history, the leaderboard and who
    is online. Node C even holds an old build, retained there before: the answer wins."""
    c = on_cluster
    # An old build retained via node C, before the builder (on A) ever ran one.
    stale = {
        "type": "Build",
        "id": act.new_id(),
        "name": "Build #0",
        "state": "failed",
        "progress": 70,
        "attributedTo": person("http://localhost:8080", ADA),
    }
    old_c = await c.probe("c", topic_filter="state/build")
    old_c.publish("state/build", act.new("Update", act.service("builder"), stale), retain=True)
    assert await old_c.conn.flush(10), "the old build was not taken"
    await old_c.stop()
    c.probes.remove(old_c)

    c.start("builder", "a", BUILD_TICK_SECONDS="0.05")
    c.start("points", "a")
    on_a = await c.probe("a")
    for name in ("builder", "points"):
        await on_a.wait_online(name, timeout=60)
    ada = person(c.public_url, ADA)
    on_a.publish("commands/builder/start", act.new("Start", ada, {"type": "Build"}))
    [done] = await on_a.wait_for("events/build/succeeded", timeout=30)
    await on_a.wait_for("state/leaderboard", lambda a: a["object"]["totalItems"] == 1)
    await on_a.wait_for("state/builds")

    # Node C holds none of it: a subscriber there, exact topics and all, gets the old
    # build and nothing else.
    state = ["state/build", "state/builds", "state/leaderboard"]
    on_c = await c.probe("c", *state, topic_filter="services/+/+")
    await asyncio.sleep(2.0)
    assert [m.topic for m in on_c.messages] == [f"{c.root}/state/build"], "node C had more"
    assert on_c.on("state/build")[0]["object"]["id"] == stale["id"]

    c.start("gateway", "c")
    await wait_http(f"{c.public_url}/healthz", 60)

    def shows_everything(s: dict[str, dict[str, Any]]) -> bool:
        build = s.get(f"{c.root}/state/build")
        return (
            build is not None
            and build["object"]["id"] == done["object"]["id"]
            and build["object"]["state"] == "succeeded"
            and f"{c.root}/state/builds" in s
            and f"{c.root}/state/leaderboard" in s
            and f"{c.root}/services/builder/1" in s
            and f"{c.root}/services/points/1" in s
        )

    seen: dict[str, dict[str, Any]] = {}
    deadline = asyncio.get_running_loop().time() + 20
    while not shows_everything(seen := await api_state(c.public_url)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the gateway on node C shows only {sorted(seen)}")
        await asyncio.sleep(0.2)
    board = seen[f"{c.root}/state/leaderboard"]["object"]["orderedItems"]
    assert [(p["preferredUsername"], p["points"]) for p in board] == [(ADA, 5)]
    history = seen[f"{c.root}/state/builds"]["object"]
    assert history["orderedItems"][0]["id"] == done["object"]["id"]
    # The dashboard page renders from the same state.
    async with aiohttp.ClientSession() as http, http.get(f"{c.public_url}/") as r:
        assert done["object"]["name"] in await r.text()


# --- each node killed in turn, under load ----------------------------------------------------


class TimedProbe(Probe):
    """A probe that also notes when each message arrived."""

    def __init__(self, url: str, root: str) -> None:
        super().__init__(url, root, persistent=True)
        self.arrivals: list[tuple[float, str, bytes]] = []

    def _record(self, msg: Message) -> None:
        self.arrivals.append((time.monotonic(), msg.topic, msg.payload))
        super()._record(msg)

    def joins_after(self, since: float) -> dict[str, float]:
        """Worker presence topic -> when its first Join after ``since`` arrived."""
        found: dict[str, float] = {}
        for at, topic, payload in self.arrivals:
            if at > since and "/services/" in topic and b'"Join"' in payload:
                found.setdefault(topic.split("/", 2)[2], at)
        return found


# Every worker of the federation; each names the three nodes in its own order, connects to
# the first that answers and, when its node is lost, goes on to the next. Killed in the
# order a, b, c, a, ..., a worker on "abc" (the gateway) is on the node killed every time.
FEDERATION = {
    "gateway": "abc",
    "builder": "bca",
    "resizer": "cab",
    "notifier": "acb",
    "points": "bac",
    "tweeter": "cba",
    "deadletters": "abc",
}
CONNECTED = re.compile(r"connected to mqtt://127\.0\.0\.1:(\d+) \(session")
CONSUMING = re.compile(
    r"^(\d\d):(\d\d):(\d\d\.\d+) .*consuming the pool's queue on amqp://127\.0\.0\.1:(\d+)",
    re.MULTILINE,
)
LINE_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) ")
HOLD = 11.0  # seconds a connection holds before the next kill: a failover, never a "cut"
# Seconds after a kill within which a worker's connection may still be dropped (RabbitMQ
# 3.10 closes one that gets a publisher nack while quorum queue leaders move: ~1 s here);
# its failover is over with the Join of its last connection in this window.
SETTLING = 5.0


def mqtt_node(cluster: PrivateCluster, proc: ServiceProcess) -> str | None:
    """The node a worker's MQTT connection is on, from its log's last connection."""
    found = CONNECTED.findall(proc.log)
    ports = {node.port: name for name, node in zip(NODES, cluster.nodes, strict=True)}
    return ports.get(int(found[-1])) if found else None


def amqp_since(cluster: PrivateCluster, proc: ServiceProcess) -> list[tuple[float, str]]:
    """(local time of day in seconds, node) of each start of consuming its pool's queue."""
    ports = {node.amqp_port: name for name, node in zip(NODES, cluster.nodes, strict=True)}
    return [
        (int(h) * 3600 + int(m) * 60 + float(sec), ports.get(int(port), "?"))
        for h, m, sec, port in CONSUMING.findall(proc.log)
    ]


def logged_at(proc: ServiceProcess, what: str) -> list[float]:
    """Local time of day (seconds) of each line of a worker's log that says ``what``."""
    found = []
    for line in proc.log.splitlines():
        if what in line and (t := LINE_TIME.match(line)):
            found.append(int(t[1]) * 3600 + int(t[2]) * 60 + float(t[3]))
    return found


def dropped_elsewhere(proc: ServiceProcess, since: float, within: float) -> list[float]:
    """Connections this worker lost in the ``within`` seconds after ``since`` (time of day)
    though its node lived, and how long each took to be back (from its log)."""
    connected = logged_at(proc, ": connected to ")
    gaps = []
    for lost in logged_at(proc, ": lost the broker"):
        if since < lost < since + within:
            back = [t for t in connected if t > lost]
            gaps.append(back[0] - lost if back else float("inf"))
    return gaps


def time_of_day(wall: float) -> float:
    local = time.localtime(wall)
    return local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec + wall % 1


@dataclass
class Kill:
    """One node killed: per worker that was on it, seconds from the kill to the Join of the
    connection it kept, seen on a node that lives (``mqtt``; ``first``: of its first
    connection after the kill, which a node may still drop), and to its log's saying it
    consumes its pool's queue again (AMQP); and the connections of workers on other nodes
    that were dropped meanwhile (RabbitMQ 3.10 closes one that gets a publisher nack:
    docs/brokers.md)."""

    node: str
    killed_at: float  # time of day
    mqtt: dict[str, float]
    first: dict[str, float]
    amqp: dict[str, float]
    elsewhere: dict[str, list[float]] = field(default_factory=dict)


async def kill_and_time(
    cluster: PrivateCluster,
    name: str,
    workers: dict[str, ServiceProcess],
    watch: dict[str, TimedProbe],
) -> Kill:
    """kill -9 of node ``name``, and until every worker that was on it is back on another."""
    on_it = [w for w, proc in workers.items() if mqtt_node(cluster, proc) == name]
    amqp_on_it = [
        w
        for w, proc in workers.items()
        if (was := amqp_since(cluster, proc)) and was[-1][1] == name
    ]
    killed, killed_wall = time.monotonic(), time.time()
    await asyncio.to_thread(cluster.kill, name)
    others = [p for node, p in watch.items() if node != name]
    since = time_of_day(killed_wall)

    def back(w: str, after: float = 0.0) -> float | None:
        """Seconds from the kill to its first Join seen ``after`` seconds past the kill."""
        times = [p.joins_after(killed + after).get(f"{w}/1") for p in others]
        first = min((t for t in times if t is not None), default=None)
        return None if first is None else first - killed

    def consuming_again(w: str) -> float | None:
        later = [t for t, _ in amqp_since(cluster, workers[w]) if since < t < since + SETTLING]
        return later[-1] - since if later else None

    def kept(w: str) -> float | None:
        """From the kill to the Join of its last connection in the settling window."""
        connects = logged_at(workers[w], ": connected to ")
        last = max((t for t in connects if since < t < since + SETTLING), default=None)
        return None if last is None else back(w, last - since - 0.005)  # the log's ms

    await wait_until(
        lambda: (
            all(back(w) is not None for w in on_it)
            and all(consuming_again(w) is not None for w in amqp_on_it)
        ),
        60,
        f"every worker of node {name} ({', '.join(on_it)}) back on another node",
    )
    first = {w: t for w in on_it if (t := back(w)) is not None}
    await asyncio.sleep(max(0.0, killed + SETTLING - time.monotonic()))
    await wait_until(lambda: all(kept(w) is not None for w in on_it), 10, "the last Joins")
    mqtt = {w: t for w in on_it if (t := kept(w)) is not None}
    amqp = {w: t for w in amqp_on_it if (t := consuming_again(w)) is not None}
    return Kill(name, since, mqtt, first, amqp)


@dataclass
class Failovers:
    """Per worker: how long it took to be back after each kill of the node it was on."""

    mqtt: dict[str, list[float]] = field(default_factory=dict)
    amqp: dict[str, list[float]] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)

    def everyone(self, which: dict[str, list[float]]) -> list[float]:
        return [t for times in which.values() for t in times]


@pytest.mark.chaos
@pytest.mark.timeout(900)
async def test_each_node_killed_in_turn_under_load_every_worker_fails_over(
    on_cluster: OnCluster, scale: Scale
) -> None:
    """Issue 22: a gateway whose node was killed never held a connection again until the
    node came back (its clean session's queue lived there). Here every node is killed in
    turn (3 in make test, 12 in make chaos), each started again before the next, under
    uploads and build results: every worker on the node killed is back on another one (its
    Join there, its pool queue consumed again), nothing is lost or done twice, and no
    worker reconnects more than the kills it lived through make it."""
    c = on_cluster
    # The bus as seen from each node (timing: a Join is seen on a node that lives), and one
    # probe naming all three, failing over itself, for the accounting.
    watch = {n: TimedProbe(node_url(c.cluster, n), c.root) for n in NODES}
    for p in watch.values():
        await p.start("services/+/+")
        c.probes.append(p)
    probe = TimedProbe(node_url(c.cluster, "cba"), c.root)
    await probe.start("#")
    c.probes.append(probe)
    workers = {
        name: c.start(name, nodes, RESIZER_THREADS="2", **NO_RATE_LIMITS)
        for name, nodes in FEDERATION.items()
    }
    await wait_http(f"{c.public_url}/healthz", 90)
    for name in FEDERATION:
        await probe.wait_online(name, timeout=90)
    # Every worker's session a quorum queue, the gateway's too (it was a clean session's
    # classic queue, which lives and dies with one node).
    listed = c.cluster.node("b").rabbitmqctl(
        "list_queues", "name", "type", "--no-table-headers", "--quiet"
    )
    types = dict(line.split("\t")[:2] for line in listed.splitlines() if c.root in line)
    for name in FEDERATION:
        assert types[f"mqtt-subscription-{c.root}-{name}-1qos1"] == "quorum", types

    traffic = Traffic(c.public_url, probe)
    await traffic.prepare()
    done = asyncio.Event()
    rate = scale.uploads_per_s / 4
    flowing = asyncio.get_running_loop().create_task(traffic.run(3600, rate, rate, until=done))
    seen = Failovers(mqtt={name: [] for name in FEDERATION}, amqp={name: [] for name in FEDERATION})
    last_back = time.monotonic()
    try:
        for n in range(scale.node_kills):
            name = NODES[n % len(NODES)]
            await asyncio.sleep(max(1.0, last_back + HOLD - time.monotonic()))
            kill = await kill_and_time(c.cluster, name, workers, watch)
            seen.kills.append(kill)
            for w, took in kill.mqtt.items():
                seen.mqtt[w].append(took)
            for w, took in kill.amqp.items():
                seen.amqp[w].append(took)
            last_back = time.monotonic()
            print(
                f"kill {n + 1}: node {name}; back: "
                + ", ".join(f"{w} {t * 1000:.0f} ms" for w, t in kill.mqtt.items())
                + "; pool queues: "
                + ", ".join(f"{w} {t * 1000:.0f} ms" for w, t in kill.amqp.items()),
                flush=True,
            )
            # The gateway says it reaches the bus again (a load balancer would send it
            # browsers again), whether or not its own node was the one killed.
            await wait_http(f"{c.public_url}/healthz", 10)
            await asyncio.to_thread(c.cluster.restart, name)
    finally:
        done.set()
        await flowing
    fault = f"kill -9 of each RabbitMQ node in turn, ×{len(seen.kills)}, under load"
    points_db = Path(c.shared["DOVECOTE_DATA_DIR"]) / "points.sqlite3"
    accounts = await settle(traffic, probe, points_db, fault, scale.settle)
    assert all(p.alive() for p in c.procs), "a service died"

    reconnects = {w: len(CONNECTED.findall(proc.log)) - 1 for w, proc in workers.items()}
    for kill in seen.kills:  # the logs are complete now
        for w, proc in workers.items():
            if w not in kill.mqtt and (gaps := dropped_elsewhere(proc, kill.killed_at, SETTLING)):
                kill.elsewhere[w] = gaps
    elsewhere = [g for kill in seen.kills for gaps in kill.elsewhere.values() for g in gaps]
    print(f"\n{fault}: {len(traffic.uploads)} uploads, {len(traffic.builds)} builds")
    for w in FEDERATION:
        times = ", ".join(f"{t * 1000:.0f}" for t in seen.mqtt[w])
        shown = ", ".join(f"{k.first[w] * 1000:.0f}" for k in seen.kills if w in k.first)
        dropped = [g for kill in seen.kills for g in kill.elsewhere.get(w, [])]
        print(
            f"  {w}: cut off {len(seen.mqtt[w])} times, back for good in {times} ms (first "
            f"Join {shown} ms); dropped by a node that lived {len(dropped)} times; "
            f"{reconnects[w]} reconnects"
        )
    record(*accounts.rows())
    everyone = seen.everyone(seen.mqtt)
    hit = [w for w in FEDERATION if seen.mqtt[w]]
    record_failover(
        f"{fault}: every worker (MQTT: the Join of the connection it kept)", everyone, len(hit)
    )
    firsts = [t for kill in seen.kills for t in kill.first.values()]
    record_failover(
        f"{fault}: every worker (MQTT: its first Join after the kill)", firsts, len(hit)
    )
    for w in hit:
        record_failover(f"{fault}: {w}", seen.mqtt[w], 1)
    if elsewhere:
        record_failover(
            f"{fault}: dropped by a node that lived (3.10's unhandled publisher nack; log)",
            elsewhere,
            len({w for kill in seen.kills for w in kill.elsewhere}),
        )
    queues = seen.everyone(seen.amqp)
    if queues:
        record_failover(
            f"{fault}: pool queues (AMQP: consuming again)",
            queues,
            len([w for w in FEDERATION if seen.amqp[w]]),
        )
    assert seen.mqtt["gateway"], "the gateway's node was never killed"
    assert set(hit) == set(FEDERATION), f"workers never cut off: {set(FEDERATION) - set(hit)}"
    # Back on another node, each time: a cut-off worker waits for its node (tens of
    # seconds); the goal, p99 <= 1 s, is reported above, not asserted on a shared machine.
    assert max(everyone) < 10, f"a failover took {max(everyone):.1f} s"
    assert max(elsewhere, default=0) < 10, "a worker dropped by a node that lived stayed away"
    for w, count in reconnects.items():
        # One per kill of its node, and a few more in the second after each kill: a 3.10
        # node that cannot confirm a publish while queue leaders move drops the connection
        # (on the new node or on one that lived), the second drop in a row backed off. The
        # flood of issue 22 was 1,060 in 3 minutes.
        assert count <= 4 * len(seen.kills), (w, count, len(seen.kills))


# --- python -m dovecote_testing.cluster: one node killed, stopped, started -------------------


def alive_in_group(pgid: int) -> list[int]:
    """Processes of process group ``pgid`` still running (zombies waiting for whoever
    inherited them are not)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


async def cluster_command(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``python -m dovecote_testing.cluster ARGS`` as a person types it (a ``dovecote``
    subcommand no more: the tools import no test support)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dovecote_testing.cluster", *args,
        env=env, cwd=PROJECT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_cluster_command_kills_and_starts_a_node_and_leaves_nothing_of_it(
    cluster: PrivateCluster, tmp_path: Path
) -> None:
    """`python -m dovecote_testing.cluster kill|start|status` from another process,
    through the running cluster's socket; a node killed from elsewhere (its pid, as
    `status` shows it) is reaped and nothing of it runs on (issue 22: a zombie, or its
    Erlang VM holding its name and ports, and a `start` that then "worked" against the old
    one)."""
    folder = tmp_path / "ctl"
    folder.mkdir()
    stop, ready = threading.Event(), threading.Event()
    said = io.StringIO()

    def serve() -> None:
        with contextlib.redirect_stdout(said):
            clusterctl.control(cluster, folder, stop.is_set, ready.set)

    server = threading.Thread(target=serve)
    server.start()
    assert await asyncio.to_thread(ready.wait, 10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOVECOTE_")}

    async def cli(*args: str) -> tuple[int, str]:
        code, out, err = await cluster_command(env, *args, "--dir", str(folder))
        return code, out + err

    b = cluster.node("b")
    try:
        assert b.process is not None
        group = b.process.pid
        code, out = await cli("kill", "b")
        assert code == 0 and "node b killed" in out, out
        assert b.process.returncode is not None, "not reaped"
        await wait_until(lambda: not alive_in_group(group), 10, "nothing of node b running")
        code, out = await cli("kill", "b")
        assert code == 1 and "node b is not running" in out, out
        code, out = await cli("status")
        assert "node b: " in out and "down, not in the cluster" in out, out
        code, out = await cli("start", "b")
        assert code == 0 and "node b started and back in the cluster" in out, out

        # From elsewhere: kill -9 of the pid status shows, the node's start script.
        assert b.process is not None
        pid = b.process.pid
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: "node b died (killed by SIGKILL)" in said.getvalue(), 10)
        await wait_until(lambda: not alive_in_group(pid), 10, "its Erlang VM gone too")
        code, out = await cli("start", "b")
        assert code == 0 and "back in the cluster" in out, out
        assert cluster.running_nodes() == {n.name for n in cluster.nodes}
    finally:
        stop.set()
        await asyncio.to_thread(server.join, 10)
    assert not (folder / clusterctl.SOCKET).exists()


def processes_mentioning(text: str) -> list[str]:
    """Running processes whose command line or environment names ``text``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            seen = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in seen:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            found.append(f"{proc.name} {command.decode(errors='replace')[:200]}")
    return found


@pytest.mark.chaos
@pytest.mark.long_chaos  # a cluster of its own (~40 s): in make chaos, not in make test
async def test_dovecote_cluster_leaves_no_process_behind(tmp_path: Path) -> None:
    """`python -m dovecote_testing.cluster` as a person runs it: started, a node killed
    and started from another shell, then Ctrl-C: no node, no Erlang VM, no epmd of it is
    left (issue 22: a killed node stayed a zombie under it)."""
    folder = tmp_path / "own"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOVECOTE_")}
    out = (tmp_path / "cluster.out").open("wb")
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dovecote_testing.cluster", "--dir", str(folder),
        stdout=out, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        said = tmp_path / "cluster.out"
        await wait_until(lambda: "lose a node" in said.read_text(), 240, "the cluster up")
        epmd_port = re.search(r"-port (\d+)", " ".join(processes_mentioning(str(folder))))
        for args in (("kill", "a"), ("start", "a"), ("stop", "c"), ("start", "c")):
            code, text, err = await cluster_command(env, *args, "--dir", str(folder))
            assert code == 0, (args, text, err)
        server.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(server.wait(), 120) == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
        out.close()
    await wait_until(lambda: not processes_mentioning(str(folder)), 30, "nothing of it left")
    if epmd_port is not None:  # its epmd's port: nothing listens there any more
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(epmd_port[1])), 1).close()
