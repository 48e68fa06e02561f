"""Several brokers in ``MQTT_URL``: connect to one that answers, fail over when it is lost.

On two private Mosquittos (they share no sessions: session resumption across nodes is a
cluster's, measured in tests/test_cluster.py): the connection rotates through the nodes,
at once while some are untried, and a worker whose node is killed is back on another.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Connection
from dovecote.tools.broker import PrivateMosquitto, free_port
from dovecote_testing.plugin import Probe, StartService, wait_until

pytestmark = [pytest.mark.brokers("mosquitto"), pytest.mark.real_broker]


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[PrivateMosquitto, PrivateMosquitto]]:
    a = PrivateMosquitto(tmp_path / "a").start()
    b = PrivateMosquitto(tmp_path / "b").start()
    yield a, b
    a.stop()
    b.stop()


def both(a: PrivateMosquitto, b: PrivateMosquitto) -> str:
    return f"mqtt://{a.host}:{a.port},{b.host}:{b.port}"


async def test_the_first_node_that_answers_is_used(
    two: tuple[PrivateMosquitto, PrivateMosquitto],
) -> None:
    _, b = two
    closed = free_port()  # nothing listens there
    conn = Connection(
        parse_mqtt_url(f"mqtt://127.0.0.1:{closed},{b.host}:{b.port}"),
        "failover-first",
        on_message=lambda _: None,
    )
    began = time.monotonic()
    conn.start()
    try:
        await conn.wait_connected(5)
        # At once: the refused node costs no backoff delay while another is untried.
        assert time.monotonic() - began < 1.0
        assert conn.reconnecting.node == (b.host, b.port)
    finally:
        await conn.stop()


async def test_a_worker_whose_node_is_killed_is_back_on_the_other_at_once(
    two: tuple[PrivateMosquitto, PrivateMosquitto],
    start_service: StartService,
    root: str,
    tmp_path: Path,
) -> None:
    a, b = two
    on_b = await Probe(b.url, root).start("services/#")
    try:
        tally = start_service(
            "tally",
            package="tests.services",
            MQTT_URL=both(a, b),
            TALLY_DB=str(tmp_path / "tally.sqlite"),
        )
        await wait_until(lambda: "connected to mqtt://127.0.0.1" in tally.log, 30, "connected")
        assert f":{a.port} (session new)" in tally.log, tally.log
        killed = time.monotonic()
        a.kill()
        [join] = await on_b.wait_for("services/tally/1", lambda x: x["type"] == "Join", 10)
        took = time.monotonic() - killed
        assert tally.process is not None and join["object"]["pid"] == tally.process.pid
        assert took < 2.0, f"failover took {took:.2f} s"
        await wait_until(lambda: f":{b.port} (session new)" in tally.log, 5, "the log")
    finally:
        await on_b.stop()
