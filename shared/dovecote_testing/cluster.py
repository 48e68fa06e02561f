"""A three-node RabbitMQ cluster on one machine, for tests and for anyone who wants to try it.

``python -m dovecote_testing.cluster`` (``dovecote_testing.clusterctl``) starts one and
prints the ``MQTT_URL`` that names its three nodes, kills, stops and starts one node on
demand, and Ctrl-C stops it all. The pytest plugin's ``cluster`` fixture starts one per test
session.

Each node is a ``PrivateRabbitMQ`` with its own name, ports and data folder; the three share
one Erlang cookie and one epmd of their own on loopback (nodes find each other through it),
and run with ``mqtt.durable_queue_type = quorum``: the queue of a persistent MQTT session
(clean session off) is replicated on every node, so the session outlives the loss of the
node it was made on. The nodes boot side by side (~16 s each here, on two cores), then the
second and third join the first (``rabbitmqctl join_cluster``), before any queue exists: a
quorum queue is spread over the nodes the cluster has when it is declared.

A node lost (``kill``: kill -9; ``stop_node``: a clean shutdown; or dead by itself) is
reaped at once or by ``reap``, which says which died unasked; ``restart`` starts it again
with its data and waits until it is back in the cluster. ``stop`` ends every node and the
epmd, and any epmd a node may have started on the cluster's port.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dovecote.tools.broker import BrokerUnavailable, free_port
from dovecote_testing.rabbitmq import PrivateRabbitMQ, kill_epmd, start_epmd, wait_epmd

log = logging.getLogger(__name__)

NODES = ("a", "b", "c")
CLUSTER_CONFIG = """
# A node of a Dovecote test cluster (dovecote_testing.cluster): persistent sessions on
# quorum queues, replicated on every node.
mqtt.durable_queue_type = quorum
"""


@dataclass
class PrivateCluster:
    """Three RabbitMQ nodes (``a``, ``b``, ``c``) clustered on loopback."""

    directory: Path
    host: str = "127.0.0.1"
    nodes: list[PrivateRabbitMQ] = field(default_factory=list)
    epmd: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # Nodes stopped or killed on purpose (not reported by ``reap``), and those reported.
    down: set[str] = field(default_factory=set)

    kind = "rabbitmq-cluster"

    def __post_init__(self) -> None:
        if not self.nodes:
            epmd_port, cookie = free_port(self.host), secrets.token_hex(20)
            for name in NODES:
                port = free_port(self.host)
                node = PrivateRabbitMQ(
                    self.directory / name,
                    host=self.host,
                    port=port,
                    name=f"dovecote-{name}-{port}@localhost",
                    epmd_port=epmd_port,
                    own_epmd=False,
                    cookie=cookie,
                    extra_config=CLUSTER_CONFIG,
                )
                node.write_config()  # picks its ports now: the URL is known before boot
                self.nodes.append(node)

    @property
    def url(self) -> str:
        """``MQTT_URL`` naming every node: a worker connects to one, fails over to another."""
        return "mqtt://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    @property
    def amqp_url(self) -> str:
        """``DOVECOTE_AMQP_URL`` naming every node (pools' queues, dovecote.poolqueue)."""
        first = self.nodes[0]
        return first.amqp_url.replace(
            f"{first.host}:{first.amqp_port}",
            ",".join(f"{n.host}:{n.amqp_port}" for n in self.nodes),
        )

    def node(self, name: str) -> PrivateRabbitMQ:
        return self.nodes[NODES.index(name)]

    def start(self, timeout: float = 180.0) -> PrivateCluster:
        if not PrivateRabbitMQ.available():
            raise BrokerUnavailable(
                "RabbitMQ is not installed: sudo apt-get install -y rabbitmq-server"
            )
        first = self.nodes[0]
        first.write_config()
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "epmd.log").open("ab") as out:
            self.epmd = start_epmd(first.epmd_port, self.host, first.env, out)
        try:
            wait_epmd(self.host, first.epmd_port)
            for node in self.nodes:
                node.launch()
            with ThreadPoolExecutor(len(self.nodes)) as boot:
                list(boot.map(lambda n: _booted(n, timeout), self.nodes))
            for node in self.nodes[1:]:
                _again(node, "stop_app")
                _again(node, "reset")
                _again(node, "join_cluster", first.name)
                node.rabbitmqctl("start_app", timeout=timeout)
                node.wait_mqtt(timeout)
            self.wait_clustered(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def running_nodes(self, via: PrivateRabbitMQ | None = None) -> set[str]:
        """The nodes the cluster says are running, asked of ``via`` (default: the first
        node that answers)."""
        for node in [via] if via else self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            with contextlib.suppress(subprocess.SubprocessError):
                out = node.rabbitmqctl("eval", "rabbit_nodes:all_running().", timeout=30)
                return {n.strip(" '[]\n") for n in out.split(",") if "@" in n}
        return set()

    def wait_clustered(self, timeout: float = 60.0) -> None:
        wanted = {n.name for n in self.nodes if n.process and n.process.poll() is None}
        deadline = time.monotonic() + timeout
        while (running := self.running_nodes()) != wanted:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"cluster: running {sorted(running)}, want {wanted}")
            time.sleep(0.5)

    def kill(self, name: str) -> None:
        """kill -9 of node ``name`` (all its processes), reaped."""
        self.down.add(name)
        self.node(name).kill()

    def stop_node(self, name: str, timeout: float = 60.0) -> None:
        """A clean shutdown of node ``name``: its connections are closed, not cut."""
        self.down.add(name)
        self.node(name).stop(timeout)

    def restart(self, name: str, timeout: float = 120.0) -> None:
        """Start a stopped or killed node again, with its data: it rejoins the cluster."""
        node = self.node(name)
        if node.running:
            raise ValueError(f"node {name} is running")
        node.launch()
        node.wait_mqtt(timeout)
        self.wait_clustered(timeout)
        self.down.discard(name)

    def reap(self) -> list[tuple[str, int]]:
        """The nodes that have died unasked since the last look (name, exit code; -9 for a
        kill -9 from elsewhere), each reaped: none stays a zombie."""
        died = []
        for name, node in zip(NODES, self.nodes, strict=True):
            if name in self.down:
                continue
            code = node.ended()  # reaps it, and kills what is left of it
            if code is not None:
                self.down.add(name)
                died.append((name, code))
        return died

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.terminate()
            self.epmd.wait(10)
        if self.nodes and self.nodes[0].epmd_port:
            kill_epmd(self.nodes[0].epmd_port, self.nodes[0].env)


def _again(node: PrivateRabbitMQ, *args: str, attempts: int = 3) -> None:
    """A cluster step that a node just booted may refuse for a moment on a busy machine
    (seen once: ``stop_app`` exit 78 right after the node answered MQTT); each is safe to
    repeat. The last failure is raised with what rabbitmqctl said."""
    for attempt in range(1, attempts + 1):
        try:
            node.rabbitmqctl(*args)
            return
        except subprocess.CalledProcessError as exc:
            if attempt == attempts:
                raise
            log.warning("%s %s failed (%s); again in 2 s", node.name, args[0], exc)
            time.sleep(2)


def _booted(node: PrivateRabbitMQ, timeout: float, attempts: int = 3) -> None:
    """Until the node answers MQTT and has started every plugin.

    A plugin starts after the MQTT listener: a node whose websocket or AMQP port was taken
    between the pick and the bind (another test's listener; seen once in CI) answers MQTT,
    then dies of ``eaddrinuse``. It is launched again on new ports for those two (its MQTT
    port is in the cluster's URL already)."""
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            node.launch()
        node.wait_mqtt(timeout)
        with contextlib.suppress(subprocess.CalledProcessError):
            node.rabbitmqctl("await_startup", timeout=timeout)  # every plugin started
            return
        assert node.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(10)  # a failed boot ends the node
        said = node.log_file.read_text(errors="replace")[-3000:]
        if node.process.poll() is None or "eaddrinuse" not in said or attempt == attempts:
            node.stop()
            raise BrokerUnavailable(f"{node.name} did not finish booting: {said}")
        log.warning("%s: a port was taken as it booted; again on new ports", node.name)
        node.ws_port = node.amqp_port = 0


if __name__ == "__main__":
    from dovecote_testing.clusterctl import main

    sys.exit(main())
