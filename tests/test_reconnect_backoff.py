"""Issue 22: a broker that accepts a connection and then drops it, again and again, met a
worker that came back at once every time: the gateway reconnected 1,060 times in 3
minutes, and each reconnect sent the state query that made every service re-announce
itself and republish its state. Made here with a relay that cuts each connection right
after the broker's CONNACK (tests/relay.py), on both brokers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dovecote.backoff import AfterLoss, Backoff
from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Connection
from dovecote_testing.plugin import Probe, StartService, TestBroker, wait_until
from tests.relay import Relay


@pytest.fixture
async def relay(broker: TestBroker) -> AsyncIterator[Relay]:
    r = await Relay(broker.host, broker.port).start()
    yield r
    await r.stop()


async def test_a_connection_cut_again_and_again_is_backed_off_and_a_lost_one_is_not(
    relay: Relay,
) -> None:
    relay.cut_after_connack = 0.05
    rule = AfterLoss(Backoff(first=0.25, factor=2.0, cap=15.0), held_after=1.0)
    conn = Connection(
        parse_mqtt_url(relay.url), "cut-again", on_message=lambda _: None, after_loss=rule
    )
    conn.start()
    try:
        await asyncio.sleep(5.0)
        # At once, at once, then 0.25, 0.5, 1, 2 (+-20 %): 6 to 7 connections in 5 s.
        # Coming back at once every time made hundreds (the relay's own pace).
        assert 4 <= relay.connacks <= 8, relay.connacks
        assert conn.reconnecting.cut_short >= relay.connacks - 1

        relay.cut_after_connack = None  # the broker keeps us now
        await wait_until(conn.ready.is_set, 20, "a connection that holds")
        await asyncio.sleep(1.2)  # held: its loss is a lost node's
        links = relay.links
        lost = asyncio.get_running_loop().time()
        await relay.block()
        await relay.unblock()
        await wait_until(lambda: relay.links > links and conn.ready.is_set(), 5, "back")
        back = asyncio.get_running_loop().time() - lost
        # No wait: backed off, the next delay would be the 7th step (>= 3.2 s). The bound
        # leaves room for a busy machine (0.54 s seen at load 8), not for a back-off.
        assert back < 2.0, f"a lost connection that had held came back in {back:.2f} s"
        assert rule.cuts == 0
    finally:
        await conn.stop()


async def test_a_worker_cut_again_and_again_does_not_flood_the_bus(
    relay: Relay, start_service: StartService, probe: Probe, broker: TestBroker
) -> None:
    """The builder asks for the federation's state on connecting (retained messages to a
    wildcard: none on RabbitMQ; declared none on Mosquitto); points answers each question
    with its presence and its leaderboard."""
    none = {"DOVECOTE_BROKER_CAPABILITIES": "none"} if broker.kind == "mosquitto" else {}
    start_service("points", **none)
    await probe.wait_online("points")
    relay.cut_after_connack = 0.2
    seen = len(probe.messages)
    start_service("builder", MQTT_URL=relay.url, **none)
    await wait_until(lambda: relay.connacks >= 1, 30, "the builder's first connection")
    await asyncio.sleep(8.0)
    since = probe.messages[seen:]
    root = probe.root

    def count(topic: str, kind: bytes = b"") -> int:
        return sum(1 for m in since if m.topic == f"{root}/{topic}" and kind in m.payload)

    connects = relay.connacks
    queries = count("services/query")
    builder_joins = count("services/builder/1", b'"Join"')
    answers = count("services/points/1", b'"Join"')
    boards = count("state/leaderboard")
    print(
        f"\n{connects} connections in 8 s, each cut 0.2 s after its CONNACK: {queries} state "
        f"queries, {builder_joins} builder Joins; points answered {answers} times "
        f"({boards} leaderboards)"
    )
    # The reconnects backed off: 0, 0, 0.25, 0.5, 1, 2, 4 s apart (+-20 %), each lasting 0.2.
    assert 4 <= connects <= 9, connects
    assert 1 <= queries <= 5, "a state query per reconnect, or none at all"
    assert builder_joins <= connects + queries  # one per connection, one per answer
    # Every question answered (the answer may gather several), no answer more than asked.
    assert 1 <= answers <= queries and 1 <= boards <= queries
