"""An AMQP 0-9-1 program receives the events a service publishes over MQTT (RabbitMQ)."""

from __future__ import annotations

import asyncio
import sys

import orjson
import pytest

from dovecote import activity as act
from dovecote.project import PROJECT
from dovecote_testing.plugin import Probe, StartService, TestBroker
from dovecote_testing.rabbitmq import PrivateRabbitMQ
from examples.amqp_consumer import binding_key

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


def test_mqtt_filters_become_amqp_binding_keys() -> None:
    assert binding_key("dovecote", "events/#") == "dovecote.events.#"
    assert binding_key("r", "events/+/created") == "r.events.*.created"


@pytest.mark.brokers("rabbitmq")
async def test_the_amqp_example_gets_the_builders_events_from_amq_topic(
    broker: TestBroker, start_service: StartService, probe: Probe
) -> None:
    assert isinstance(broker, PrivateRabbitMQ)
    consumer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.amqp_consumer",
        "--url",
        broker.amqp_url,
        "--root",
        probe.root,
        "--filter",
        "events/build/#",
        "--count",
        "3",
        cwd=PROJECT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert consumer.stdout is not None
        first = await asyncio.wait_for(consumer.stdout.readline(), 30)
        assert first.startswith(b"listening on amq.topic")
        start_service("builder", BUILD_TICK_SECONDS="0.05")
        await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
        probe.publish("commands/builder/start", act.new("Start", ADA, {"type": "Build"}))
        [started] = await probe.wait_for("events/build/started")
        out, _ = await asyncio.wait_for(consumer.communicate(), 30)
        got = [orjson.loads(line) for line in out.splitlines()]
    finally:
        if consumer.returncode is None:
            consumer.kill()
            await consumer.wait()
    assert consumer.returncode == 0
    # The same activity the MQTT subscriber saw, topic mapped back from the routing key.
    assert got[0] == {
        "topic": f"{probe.root}/events/build/started",
        "id": started["id"],
        "type": "Create",
        "actor": "urn:dovecote:service:builder",
    }
    assert [g["topic"].rsplit("/", 1)[1] for g in got[1:]] == ["progress", "progress"]
