"""What the broker really delivers, checked at start-up rather than trusted from a SUBACK.

RabbitMQ 3.10 grants a ``$share/...`` subscription and then delivers nothing to it, and
delivers retained messages to exact-topic subscriptions only (docs/brokers.md). A worker asks
the broker itself, on a short-lived clean-session connection, under its own topic root:

1. publish a retained message to ``services/probe/<token>/retained``;
2. subscribe ``services/probe/<token>/+`` (a wildcard) and
   ``$share/<group>/<root>/services/probe/<token>s/shared`` (a topic the wildcard misses);
3. publish to ``services/probe/<token>s/shared``, then to ``services/probe/<token>/marker``;
4. once the marker has arrived (same connection, so the broker has routed the earlier
   publishes by then), see what else came; clear the retained message.

``python -m dovecote.capabilities [MQTT_URL]`` prints the result for any broker.

A login pinned to one client id (Mosquitto's dynamic security, docs/deploying.md) cannot
open that second connection: there ``DOVECOTE_BROKER_CAPABILITIES`` states the answer
(``declared``) and no probe runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from dataclasses import dataclass

from dovecote import activity as act
from dovecote import topics
from dovecote.config import BrokerAddress, ConfigError, parse_mqtt_url
from dovecote.mqtt import Connection, Message
from dovecote.transport import Connect

SHARED, RETAINED = "shared-subscriptions", "retained-to-wildcards"
GRACE = 0.25  # after the marker, how long a late shared or retained copy may still come


@dataclass(frozen=True)
class Capabilities:
    shared_subscriptions: bool  # $share/<group>/<filter> splits messages between members
    retained_to_wildcards: bool  # a new `+`/`#` subscription gets matching retained messages
    # False: the check's own marker never came back (e.g. a user who may not publish), so
    # the two flags above are guesses on the safe side, not answers.
    checked: bool = True

    def describe(self) -> str:
        def yes(flag: bool) -> str:
            return "yes" if flag else "NO"

        if not self.checked:
            return "not checked: the check's own messages never came back (may it publish?)"
        return (
            f"shared subscriptions: {yes(self.shared_subscriptions)}; "
            f"retained messages to wildcard subscriptions: {yes(self.retained_to_wildcards)}"
        )


def declared(raw: str) -> Capabilities | None:
    """``DOVECOTE_BROKER_CAPABILITIES``: empty, probe; ``none``, or a comma-separated list of
    ``shared-subscriptions`` and ``retained-to-wildcards`` (Mosquitto 2.x: both)."""
    names = {part.strip() for part in raw.split(",") if part.strip()}
    if not names:
        return None
    if names != {"none"} and not names <= {SHARED, RETAINED}:
        raise ConfigError(
            f"DOVECOTE_BROKER_CAPABILITIES: a list of {SHARED}, {RETAINED}, or none; got {raw!r}"
        )
    return Capabilities(
        shared_subscriptions=SHARED in names, retained_to_wildcards=RETAINED in names
    )


async def probe(
    broker: BrokerAddress,
    root: str,
    client_id: str,
    timeout: float = 10.0,
    token: str | None = None,
    connect: Connect = Connection,
) -> Capabilities:
    """Ask the broker. Waits (reconnecting) until it answers; ``timeout`` bounds the checks.

    ``token`` names the check's topics (``services/probe/<token>/...`` and
    ``services/probe/<token>s/shared``): a caller watching the bus can recognise its own.
    """
    token = token or uuid.uuid4().hex[:16]
    arrived: dict[str, Message] = {}
    marker = asyncio.Event()
    address = {
        "retained": topics.PROBE.address(root, token=token, check="retained"),
        "marker": topics.PROBE.address(root, token=token, check="marker"),
        "shared": topics.PROBE.address(root, token=f"{token}s", check="shared"),
    }

    def record(msg: Message) -> None:
        check = msg.topic.rsplit("/", 1)[-1]
        if msg.payload:
            arrived.setdefault(check, msg)
        if check == "marker":
            marker.set()

    conn = connect(
        broker,
        f"{client_id}-probe",
        on_message=record,
        clean_session=True,
        manual_ack=False,
        quiet=True,
    )
    conn.start()
    try:
        await conn.wait_connected()
        note = act.encode(
            act.Activity(
                **act.envelope(), type="Create", actor=act.service("probe"), object={"type": "Note"}
            )
        )
        conn.publish(address["retained"], note, 1, True)
        await conn.flush(timeout)
        subacks = [
            conn.subscribe(f"$share/probe-{token}/{address['shared']}", 1),
            conn.subscribe(topics.PROBE.filter(root).replace("+", token, 1), 1),
        ]
        # asyncio.wait, not wait_for(gather()): cancelled (a worker stopped while starting),
        # a gather is left holding a CancelledError that asyncio then logs as never retrieved.
        pending = {s for s in subacks if s is not None}
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        conn.publish(address["shared"], note, 1)
        conn.publish(address["marker"], note, 1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(marker.wait(), timeout)
        if marker.is_set() and len(arrived) < 3:
            await asyncio.sleep(GRACE)
        conn.publish(address["retained"], b"", 1, True)  # leave nothing behind
        await conn.flush(timeout)
    finally:
        await conn.stop(2)
    return Capabilities(
        shared_subscriptions="shared" in arrived,
        retained_to_wildcards="retained" in arrived,
        checked=marker.is_set(),
    )


async def _main(url: str) -> int:
    caps = await probe(parse_mqtt_url(url), "dovecote", f"capabilities-{uuid.uuid4().hex[:8]}")
    print(f"{parse_mqtt_url(url).redacted()}: {caps.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(sys.argv[1] if len(sys.argv) > 1 else "mqtt://localhost:1883")))
