"""The topic registry: the single source of truth for a federation's MQTT API.

Every topic is declared once, with its pattern (relative to the configurable root),
publisher, QoS, retain flag and payload type. The runtime refuses to publish anything that
is not declared (or not declared for the publishing service), ``docs/topics.md`` is generated
from the registry, and tests check the docs against it.

Here are the runtime's own topics, which every federation has (presence, dead letters,
metrics, traces, the broker checks). A service declares the topics it publishes in its own
contract module, ``services/<name>/topics.py``, with ``register()``; the federation's manifest
lists those modules (``dovecote.federation``), and a tool that needs the whole registry loads
the manifest. A retained ``state/...`` topic may say how the dashboard shows it (``display=``,
see ``dovecote.display``): the gateway then draws it as a card. Rules for every topic
(docs/topics.md):

- lowercase, no leading slash, no spaces; levels separated by ``/``;
- no ``.`` anywhere: RabbitMQ maps ``/`` to ``.`` for AMQP, so a dot would split a level;
- parameters such as ``{user}`` are single levels filled with sanitised ids (``check_id``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic

from typing_extensions import TypeVar

from dovecote import activity as act
from dovecote.display import Display
from dovecote.errors import TopicError as TopicError  # re-exported: topics.TopicError

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_LEVEL_RE = re.compile(r"^(?:[a-z0-9][a-z0-9_-]*|\{[a-z_]+\})$")
_PARAM_RE = re.compile(r"^\{([a-z_]+)\}$")

# A topic's payload type: ``Topic[act.Presence]`` takes only that (``Bus.publish``). A
# bare ``Topic`` is any topic.
P = TypeVar("P", bound=act.Activity, default=Any)


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is safe as one topic level, else raise ``TopicError``.

    Ids are refused rather than silently rewritten: two different inputs must never map to
    the same topic. Use ``slug()`` to derive an id from free text.
    """
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise TopicError(
            f"{what} {value!r} is not a valid topic id: use 1-64 of a-z 0-9 _ - "
            "(no '/', '+', '#', '.', spaces or capitals)"
        )
    return value


def slug(text: str) -> str:
    """A valid id made from free text: ``'Ada Lovelace!'`` -> ``'ada-lovelace'``."""
    value = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:64]
    if not value:
        raise TopicError(f"cannot make an id from {text!r}")
    return value


@dataclass(frozen=True)
class Topic(Generic[P]):
    """One entry of the registry; ``P`` is its payload type."""

    pattern: str  # relative to the root, e.g. "users/{user}/notifications"
    publisher: str  # the service that publishes it; "*" for every service
    qos: int
    retain: bool
    payload: type[P]
    summary: str
    # Who the activity's ``actor`` is on this topic, in words (topics.md, AsyncAPI).
    actor: str = field(default="", kw_only=True)
    # What a parameter of this topic means, where ``PARAMETERS`` does not already say.
    meanings: Mapping[str, str] = field(
        default_factory=dict, kw_only=True, compare=False, hash=False, repr=False
    )
    # How the dashboard shows this retained state as a card (``dovecote.display``).
    display: Display | None = field(default=None, kw_only=True, repr=False)
    levels: tuple[str, ...] = field(init=False, repr=False)
    params: tuple[str, ...] = field(init=False, repr=False)
    codec: act.Codec[P] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels = tuple(self.pattern.split("/"))
        for level in levels:
            if not _LEVEL_RE.match(level):
                raise TopicError(f"topic pattern {self.pattern!r}: bad level {level!r}")
        if self.qos not in (0, 1):
            # QoS 2 is downgraded to 1 by RabbitMQ (docs/brokers.md): 0 and 1 are portable.
            raise TopicError(f"topic {self.pattern!r}: QoS must be 0 or 1")
        params = tuple(m.group(1) for lv in levels if (m := _PARAM_RE.match(lv)))
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "codec", act.Codec(self.payload))
        if self.display is not None:
            if not (self.retain and self.kind == "state"):
                raise TopicError(
                    f"topic {self.pattern!r}: only retained state/... topics have a display "
                    "(a card shows what is true now, which a late page gets from the broker)"
                )
            self.display.check(self.payload, params, self.pattern)

    def meaning(self, param: str) -> str:
        """What one ``{param}`` level holds; "" when nobody said (a test fails on that)."""
        return self.meanings.get(param) or PARAMETERS.get(param, "")

    @property
    def kind(self) -> str:
        """The first level: events, commands, state, users, services, deadletter, metrics
        or replies (answers to one request, on a topic the asker subscribed to first)."""
        return self.levels[0]

    def address(self, root: str, **params: str) -> str:
        """The concrete topic: ``address("dovecote", user="ada")``."""
        if set(params) != set(self.params):
            raise TopicError(f"topic {self.pattern!r} needs {self.params}, got {sorted(params)}")
        out = [root]
        for level in self.levels:
            m = _PARAM_RE.match(level)
            out.append(check_id(params[m.group(1)], m.group(1)) if m else level)
        return "/".join(out)

    @property
    def relative_filter(self) -> str:
        """The subscription filter below the root: every parameter becomes ``+``."""
        return "/".join("+" if _PARAM_RE.match(lv) else lv for lv in self.levels)

    def filter(self, root: str) -> str:
        return f"{root}/{self.relative_filter}"

    def match(self, root: str, topic: str) -> dict[str, str] | None:
        """The parameters if ``topic`` is an address of this entry, else None."""
        parts = topic.split("/")
        if len(parts) != len(self.levels) + 1 or parts[0] != root:
            return None
        params: dict[str, str] = {}
        for level, part in zip(self.levels, parts[1:], strict=True):
            m = _PARAM_RE.match(level)
            if m:
                if not _ID_RE.match(part):
                    return None
                params[m.group(1)] = part
            elif level != part:
                return None
        return params


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching with ``+`` and ``#`` (``$share/<group>/`` prefixes stripped)."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    f_parts = topic_filter.split("/")
    t_parts = topic.split("/")
    if topic.startswith("$") and f_parts[0] in ("+", "#"):
        return False  # MQTT-4.7.2-1: wildcards at the start never match $-topics
    for i, f in enumerate(f_parts):
        if f == "#":
            return True
        if i >= len(t_parts) or (f != "+" and f != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


# What the parameters of the federation's topics hold; a topic may add its own (``meanings``).
PARAMETERS = {
    "user": "a person's user id: their `preferredUsername` in the gateway's user directory",
    "service": "a service's name (its folder under `services/`)",
    "instance": "a worker's id within its service (`DOVECOTE_INSTANCE`)",
    "request": "the asking command's id as 32 hex digits; the asker subscribes to the reply "
    "topic before it asks",
    "token": "a random token naming one worker's start-up check",
    "check": "which check of that probe (`shared`, `retained`, `marker`)",
}

# What every subscriber may rely on, whatever the topic (topics.md and AsyncAPI say it).
DELIVERY = (
    "Delivery is at least once: a QoS 1 message may arrive twice (a redelivery after a crash "
    "or a reconnect), so a subscriber acts once per activity `id` (Dovecote's runtime skips a "
    "copy of an activity it has handled on that topic, and parks a different activity reusing "
    "its `id` there; stores key their effects on it). An activity made because of another "
    "carries the same `id` on every redelivery of its cause, so repeats stay repeats. QoS 0 "
    "topics (progress ticks) may lose messages; the state they lead to is on a QoS 1 topic. "
    "A retained topic keeps its last message at the broker for subscribers that join later "
    "(subscribe to it exactly: RabbitMQ delivers retained messages only to exact-topic "
    "subscriptions)."
)

_REGISTRY: dict[str, Topic] = {}


def register(topic: Topic[P]) -> Topic[P]:
    """Declare a topic. Declaring the same pattern twice is an error, not an override."""
    if topic.pattern in _REGISTRY and _REGISTRY[topic.pattern] != topic:
        raise TopicError(f"topic {topic.pattern!r} is already registered differently")
    _REGISTRY[topic.pattern] = topic
    return topic


def all_topics() -> Iterator[Topic]:
    return iter(sorted(_REGISTRY.values(), key=lambda t: t.pattern))


def lookup(root: str, topic: str) -> tuple[Topic, dict[str, str]] | None:
    """Which registered entry a concrete topic belongs to, with its parameters."""
    for entry in _REGISTRY.values():
        params = entry.match(root, topic)
        if params is not None:
            return entry, params
    return None


# --- the runtime's own: presence and dead letters -------------------------------------

PRESENCE = register(
    Topic(
        "services/{service}/{instance}",
        "*",
        1,
        True,
        act.Presence,
        "Presence of one worker: retained Join (online); its Last Will is a Leave (offline).",
        actor="the worker's service",
    )
)
DEADLETTER = register(
    Topic(
        "deadletter/{service}",
        "*",
        1,
        False,
        act.DeadLetter,
        "A message the service could not process: original topic, payload, reason, attempts.",
        actor="the service that parked the message",
    )
)

REDELIVER = register(
    Topic(
        "commands/{service}/redeliver",
        "deadletters",
        1,
        False,
        act.Redelivery,
        "Handle a dead letter again: the runtime of the service that parked it runs the "
        "original payload through the handler of its original topic (only that service sees "
        "it; no one else's topic is republished), if the letter carries that service's "
        "signature, unchanged, and was not redelivered before; else it is parked, unrun.",
        actor="the deadletters service, on an operator's `dovecote deadletter replay`",
    )
)
DEADLETTER_LIST = register(
    Topic(
        "commands/deadletters/list",
        "operator",
        1,
        False,
        act.ListDeadLetters,
        "`dovecote deadletter list`: which dead letters the deadletters service holds.",
        actor="the operator's tool (`dovecote deadletter list`, an Application)",
    )
)
DEADLETTER_REPLAY = register(
    Topic(
        "commands/deadletters/replay",
        "operator",
        1,
        False,
        act.ReplayDeadLetters,
        "`dovecote deadletter replay`: send letters back to the services that parked them.",
        actor="the operator's tool (`dovecote deadletter replay`, an Application)",
    )
)
DEADLETTER_REPLY = register(
    Topic(
        "replies/deadletters/{request}",
        "deadletters",
        1,
        False,
        act.DeadLetterReply,
        "The deadletters service's answer to one operator command; `{request}` is the "
        "command's uuid in hex, which the asking tool subscribed to first.",
        actor="the deadletters service",
    )
)

# --- watching the federation: metrics and traces --------------------------------------

METRICS = register(
    Topic(
        "metrics/{service}/{instance}",
        "*",
        0,
        False,
        act.MetricsReport,
        "One worker's measurements since it started (messages handled per topic, a handler "
        "latency histogram, skips, retries, parks, publishes, lag, connection), every "
        "`DOVECOTE_METRICS_INTERVAL` seconds while they change, and every "
        "`DOVECOTE_METRICS_HEARTBEAT` seconds when they do not (an idle federation keeps the "
        "bus quiet); the gateway serves them at `/metrics` and on "
        "its operations page. QoS 0: every count is a total, the next report repairs a "
        "lost one.",
        actor="the worker's service",
    )
)
TRACE_QUERY = register(
    Topic(
        "commands/gateway/trace",
        "operator",
        1,
        False,
        act.ViewTrace,
        "`dovecote trace CONTEXT`: every activity the gateway saw carry one correlation id, "
        "from its bounded index; the answer comes on `replies/gateway/{request}`.",
        actor="the operator's tool (`dovecote trace`, an Application)",
    )
)
TRACE_REPLY = register(
    Topic(
        "replies/gateway/{request}",
        "gateway",
        1,
        False,
        act.TraceReply,
        "The gateway's answer to one `commands/gateway/trace`: the trace, oldest step first.",
        actor="the gateway",
    )
)

# --- the runtime's own: presence fallback and broker checks ----------------------------

PRESENCE_QUERY = register(
    Topic(
        "services/query",
        "*",
        1,
        False,
        act.Activity,
        "Who is online, and what is the state now? Every worker answers by publishing its "
        "presence Join again, and the owner of each state topic republishes it (the builder "
        "that ran the latest build, points); every worker also publishes again the retained "
        "state it has published since it started on topics with a parameter "
        "(`state/<x>/{user}`). Sent on connecting by a subscriber of services/+/+, of a state "
        "topic or of such a topic's wildcard on a broker that does not deliver retained "
        "messages to wildcard subscriptions (RabbitMQ), where it would see nobody, and whose "
        "retained store is per node, where another node's state would be missing or old.",
        actor="whoever asks (a gateway, a builder, `dovecote tail`)",
    )
)
PROBE = register(
    Topic(
        "services/probe/{token}/{check}",
        "*",
        1,
        False,
        act.Activity,
        "A worker's start-up check of what the broker really delivers (shared subscriptions, "
        "retained messages to wildcards); the retained one is cleared at once.",
        actor="the worker checking the broker",
    )
)
