"""Past one machine: the federation on a three-node RabbitMQ cluster (``dovecote cluster``).

One cluster per test session (the ``cluster`` fixture, ~35 s to boot on two cores); the
tests are marked ``cluster`` and run on one pytest-xdist worker. Each test has its own topic
root, so they share the cluster without seeing each other.
"""

from __future__ import annotations

import asyncio
import secrets
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
from dovecote.testing.cluster import PrivateCluster
from dovecote.testing.plugin import Probe, ServiceProcess, environment, wait_until
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


# --- kill -9 of a node under load -------------------------------------------------------------


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


# Each service names the three nodes in its own order: it connects to the first that
# answers, and fails over to the next. A is the node killed.
SPREAD = {"resizer": "abc", "tweeter": "acb", "notifier": "abc", "points": "cab", "gateway": "bac"}


@pytest.mark.chaos
async def test_kill_9_of_a_node_under_load_loses_and_doubles_nothing(
    on_cluster: OnCluster, scale: Scale
) -> None:
    c = on_cluster
    probe = TimedProbe(node_url(c.cluster, "c"), c.root)
    await probe.start("#")
    c.probes.append(probe)
    for name, nodes in SPREAD.items():
        c.start(name, nodes, RESIZER_THREADS="2", LOG_LEVEL="WARNING", **NO_RATE_LIMITS)
    await wait_http(f"{c.public_url}/healthz", 60)
    for name in SPREAD:
        await probe.wait_online(name, timeout=60)
    on_a = [f"{n}/1" for n, nodes in SPREAD.items() if nodes[0] == "a"]

    traffic = Traffic(c.public_url, probe)
    await traffic.prepare()
    flowing = asyncio.get_running_loop().create_task(
        traffic.run(scale.seconds, scale.uploads_per_s / 2, scale.builds_per_s / 2)
    )
    await asyncio.sleep(scale.seconds / 3)
    killed_at = time.monotonic()
    c.cluster.node("a").kill()
    await flowing
    fault = "kill -9 of RabbitMQ node A of 3 under load"
    points_db = Path(c.shared["DOVECOTE_DATA_DIR"]) / "points.sqlite3"
    accounts = await settle(traffic, probe, points_db, fault, scale.settle)

    back = probe.joins_after(killed_at)
    failover = sorted(back[w] - killed_at for w in on_a if w in back)
    print(
        f"\nfailover after kill -9 of node A: {len(failover)} workers on it, "
        + ", ".join(f"{t * 1000:.0f} ms" for t in failover)
    )
    assert len(failover) == len(on_a), f"not every worker of node A came back: {back}"
    assert all(p.alive() for p in c.procs), "a service died"
    record(*accounts.rows())
    record_failover(fault, failover)
    c.cluster.restart("a")  # for the tests after this one
