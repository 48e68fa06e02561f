"""What each broker really delivers, and how Dovecote copes: run against both brokers."""

from __future__ import annotations

import asyncio

import aiohttp

from dovecote import capabilities
from dovecote.capabilities import Capabilities
from dovecote.config import parse_mqtt_url
from dovecote_testing.plugin import Probe, StartService, TestBroker, wait_until
from tests.fixtures import wait_http

EXPECTED = {
    "mosquitto": Capabilities(shared_subscriptions=True, retained_to_wildcards=True),
    "rabbitmq": Capabilities(shared_subscriptions=False, retained_to_wildcards=False),
}


async def test_the_start_up_probe_finds_what_each_broker_delivers(
    broker: TestBroker, root: str
) -> None:
    caps = await capabilities.probe(parse_mqtt_url(broker.url), root, f"{root}-caps")
    assert caps == EXPECTED[broker.kind]
    if caps.retained_to_wildcards:  # where a wildcard would see it: nothing left behind
        late = await Probe(broker.url, root).start()
        await asyncio.sleep(0.5)
        assert [m.topic for m in late.messages if m.retain] == []
        await late.stop()


async def test_a_late_gateway_still_sees_who_is_online(
    broker: TestBroker, start_service: StartService, service_env: dict[str, str], probe: Probe
) -> None:
    """RabbitMQ does not deliver retained presence to `services/+/+`: the gateway asks."""
    start_service("builder")
    # On RabbitMQ the builder also answers its own start-up query: one Join or two by now.
    joins = await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
    await asyncio.sleep(0.3)
    before = {a["id"] for a in probe.on("services/builder/1")}
    gateway = start_service("gateway")
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz")
    found: list[str] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(f"{url}/api/state") as r:
                found = [f["topic"] for f in await r.json() if "/services/" in f["topic"]]
            if f"{probe.root}/services/builder/1" in found:
                break
            await asyncio.sleep(0.1)
    assert f"{probe.root}/services/builder/1" in found
    asked = "asking every worker to announce itself" in gateway.log
    assert asked is (broker.kind == "rabbitmq")
    if asked:  # the builder answered the gateway's question with a fresh Join
        await wait_until(
            lambda: any(a["id"] not in before for a in probe.on("services/builder/1")),
            10,
            "a Join for the gateway",
        )
        assert joins[0]["id"] in before
