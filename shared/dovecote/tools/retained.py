"""The retained state under a filter, first, on any broker: for a tool that watches the bus.

Mosquitto gives a new wildcard subscription every retained message it matches; RabbitMQ
gives retained messages to exact-topic subscriptions only (docs/brokers.md). So a watcher
asks the broker which it is, as every worker does (``dovecote.capabilities``), and where
wildcards get nothing retained it subscribes to each registered state topic under its
filter exactly and, when the filter covers presence, asks every worker to announce itself
(``services/query``), as the gateway does. What it still cannot get (retained messages of
unregistered topics, or of registered topics with parameters other than presence) it says
in one line.

Until then, live messages are held back, so the state comes first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from dovecote import activity as act
from dovecote import capabilities, topics
from dovecote.config import Settings
from dovecote.mqtt import BusError, Connection, Message
from dovecote.statequery import ANSWER_EVERY

CHECK_TIMEOUT = 1.5  # a broker that answers at all answers the check in milliseconds
CHECK_LIMIT = 5.0  # the whole check, connecting included: then it counts as not checked
UNCHECKED = capabilities.Capabilities(False, False, checked=False)
# After the presence question, for the workers' answers: a worker that answered someone
# less than ANSWER_EVERY ago answers again only when that interval ends (issue 22).
ANSWER_GRACE = ANSWER_EVERY + 0.5
TOOL_ACTOR = act.Actor(type="Application", id="urn:dovecote:cli:tail", name="dovecote tail")


def _wildcard(topic_filter: str) -> bool:
    return any(level in ("+", "#") for level in topic_filter.split("/"))


def overlap(a: str, b: str) -> bool:
    """Whether some topic matches both filters (``a/+/c`` and ``a/b/+`` do)."""
    left, right = a.split("/"), b.split("/")
    for x, y in zip(left, right, strict=False):
        if "#" in (x, y):
            return True
        if x != y and "+" not in (x, y):
            return False
    longer = left if len(left) > len(right) else right
    return len(left) == len(right) or longer[min(len(left), len(right)) :] == ["#"]  # a/# has a


class StateFirst:
    """Sits between a watcher's connection and its output: state first, then live."""

    def __init__(
        self,
        root: str,
        topic_filter: str,
        emit: Callable[[Message], None],
        declared: capabilities.Capabilities | None = None,
    ) -> None:
        self.root = root
        self.declared = declared  # DOVECOTE_BROKER_CAPABILITIES: no check needed
        self.filter = f"{root}/{topic_filter}"
        self.emit = emit
        self.token = uuid.uuid4().hex[:16]
        retained = [t for t in topics.all_topics() if t.retain]
        self.under = [t for t in retained if overlap(self.filter, t.filter(self.root))]
        # The state topics under the filter: subscribed one by one where wildcards get no
        # retained message, and then they can arrive through two subscriptions.
        self.exact = {t.address(self.root) for t in self.under if not t.params}
        self.asked = False  # the presence question went out: Joins are state, not news
        self.ready = False
        self._held: list[Message] = []
        self._recent: dict[tuple[str, bytes], None] = {}

    def on_message(self, msg: Message) -> None:
        if msg.topic.startswith(f"{self.root}/services/probe/{self.token}"):
            return  # our own check of the broker
        if msg.topic in self.exact and self._repeated(msg):
            return
        if self.ready or msg.retain or (self.asked and self._presence(msg.topic)):
            self.emit(msg)
        else:
            self._held.append(msg)

    def _presence(self, topic: str) -> bool:
        return topics.PRESENCE.match(self.root, topic) is not None

    def _repeated(self, msg: Message) -> bool:
        """The same message through the filter and through an exact subscription (brokers
        that deliver once per matching subscription): shown once."""
        key = (msg.topic, msg.payload)
        if key in self._recent:
            return True
        self._recent[key] = None
        if len(self._recent) > 256:
            del self._recent[next(iter(self._recent))]
        return False

    async def gather(self, conn: Connection, settings: Settings) -> str | None:
        """Call once the filter is subscribed. Fetches what the broker did not send, then
        lets the held live messages through. Returns the one line to say, if any."""
        try:
            if not _wildcard(self.filter):
                return None  # an exact subscription gets its retained message everywhere
            caps, why = await self._capabilities(conn, settings)
            if caps.retained_to_wildcards:
                said = None
            else:
                said = await self._ask(conn, settings, caps, why)
            await self._fence(conn)
            return said
        except (TimeoutError, BusError) as exc:
            return f"the retained state could not be fetched: {exc or 'no answer in time'}"
        finally:
            self.ready = True
            held, self._held = self._held, []
            for msg in held:
                self.emit(msg)

    async def _capabilities(
        self, conn: Connection, settings: Settings
    ) -> tuple[capabilities.Capabilities, str]:
        """What the broker delivers, and if unknown, why: as a worker learns it (declared in
        DOVECOTE_BROKER_CAPABILITIES, else checked on a second, short-lived connection)."""
        if self.declared is not None:
            return self.declared, ""
        if settings.get_str("MQTT_CLIENT_ID", ""):
            why = "a login pinned to one client id cannot open a second connection to check"
            return UNCHECKED, f"{why}; set DOVECOTE_BROKER_CAPABILITIES"
        try:
            caps = await asyncio.wait_for(
                capabilities.probe(
                    settings.broker, self.root, conn.client_id, CHECK_TIMEOUT, self.token
                ),
                CHECK_LIMIT,
            )
        except TimeoutError:  # e.g. a login the broker refuses a second connection
            caps = UNCHECKED
        return caps, "the check's own messages did not come back: may this login publish?"

    async def _fence(self, conn: Connection) -> None:
        """One more SUBSCRIBE round trip. A broker sends a subscription's retained messages
        before it reads the client's next packet: once this SUBACK is back, they are here."""
        granted = conn.subscribe(f"{self.root}/services/probe/{self.token}/fence", 0)
        if granted is not None:
            await asyncio.wait_for(granted, 5)

    async def _ask(
        self, conn: Connection, settings: Settings, caps: capabilities.Capabilities, why: str
    ) -> str:
        checked = caps.checked
        granted = [conn.subscribe(topic, 1) for topic in sorted(self.exact)]
        pending = {g for g in granted if g is not None}
        if pending:  # asyncio.wait: see capabilities.probe
            await asyncio.wait(pending, timeout=5)
        presence = topics.PRESENCE in self.under
        # A user who may not publish (the check did not come back) is not made to try:
        # RabbitMQ closes the connection of a refused publish.
        if presence and checked:
            self.asked = True
            question = act.Activity(
                **act.envelope(),
                type="Question",
                actor=TOOL_ACTOR,
                object={"type": "Collection", "name": "online"},
            )
            conn.publish(topics.PRESENCE_QUERY.address(self.root), act.encode(question), 1)
            await conn.flush(2)
            await asyncio.sleep(ANSWER_GRACE)
        broker = settings.broker.redacted()
        shown = "the state topics were subscribed one by one"
        if self.asked:
            shown += " and every worker was asked to announce itself"
        if not checked:
            return f"could not check what {broker} delivers ({why}): {shown}" + (
                "; who is online may be missing" if presence else ""
            )
        return (
            f"{broker} does not deliver retained messages to wildcard subscriptions: {shown}; "
            f"other retained messages under {self.filter} cannot be shown"
        )
