"""One piece of work across the federation: every activity that carried its correlation id.

The gateway hears every event, the retained state, every person's notifications, every
dead letter, and sends the commands its pages ask for; each of those that carries a
``context`` is kept here, as the bytes that arrived, under that context. Asked for one
(``dovecote trace CONTEXT``, the operations page), the index gives its steps oldest first
by ``published``: who did what, when, and how long after the step before.

Bounded by bytes (``TRACE_INDEX_BYTES``), like the replay ring: past the budget the oldest
activities go first, so a long-lived context may lose its first steps (its trace then says
``partial``) while a new one is whole. A context is also found by the start of its id (the
``ctx 37747bd6`` that ``dovecote tail`` prints).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from datetime import UTC, datetime
from typing import Any

import orjson

from dovecote import activity as act
from dovecote import topics
from dovecote.summaries import summarize

ENTRY_OVERHEAD = 120  # bytes an entry costs beyond its payload and topic
LISTED = 200  # steps a trace lists (act.Trace)
MIN_PREFIX = 4  # characters a shortened context needs
CANDIDATES = 20
RECENT = 12  # contexts the operations page offers

Entry = tuple[float, str, bytes]  # received (time.time()), topic, payload


class TraceIndex:
    """Activities by correlation id, the newest ``budget`` bytes of them."""

    def __init__(self, budget: int, root: str) -> None:
        self.budget = budget
        self.root = root
        self.held = 0
        self.order: deque[tuple[str, Entry]] = deque()  # arrival order, for eviction
        self.contexts: OrderedDict[str, deque[Entry]] = OrderedDict()  # newest last
        self.partial: set[str] = set()  # contexts that lost their oldest steps

    def add(self, topic: str, context: str | None, payload: bytes) -> None:
        """Keep one activity (``payload`` as it travelled) under its correlation id."""
        if not context or self.budget <= 0:
            return
        entry = (time.time(), topic, payload)
        steps = self.contexts.get(context)
        if steps is None:
            steps = self.contexts[context] = deque()
        else:
            self.contexts.move_to_end(context)
        steps.append(entry)
        self.order.append((context, entry))
        self.held += _cost(entry)
        while self.held > self.budget and self.order:
            old_context, old = self.order.popleft()
            self.held -= _cost(old)
            old_steps = self.contexts[old_context]
            old_steps.popleft()  # arrival order: the oldest of its context too
            if old_steps:
                self.partial.add(old_context)
            else:
                del self.contexts[old_context]
                self.partial.discard(old_context)

    def recent(self, count: int = RECENT) -> list[dict[str, Any]]:
        """The contexts that moved last, newest first, each with its first step's topic."""
        out = []
        for context in reversed(self.contexts):
            steps = self.contexts[context]
            out.append(
                {
                    "context": context,
                    "steps": len(steps),
                    "first": steps[0][1].removeprefix(f"{self.root}/"),
                    "last": _iso(steps[-1][0]),
                }
            )
            if len(out) == count:
                break
        return out

    def find(self, query: str) -> act.Trace:
        """The trace of ``query`` (a context, or the start of one)."""
        context, candidates = self._resolve(query.strip())
        if context is None:
            return act.Trace(type="OrderedCollection", totalItems=0, candidates=candidates)
        entries = self.contexts[context]
        steps = sorted(
            (s for s in (self._step(e) for e in entries) if s is not None),
            key=lambda s: (s.published, s.received),
        )
        return act.Trace(
            type="OrderedCollection",
            context=context,
            totalItems=len(steps),
            orderedItems=steps[:LISTED],
            partial=context in self.partial,
        )

    def _resolve(self, query: str) -> tuple[str | None, list[str]]:
        if query in self.contexts:
            return query, []
        if len(query) < MIN_PREFIX:
            return None, []
        found = [c for c in reversed(self.contexts) if _starts(c, query)]
        if len(found) == 1:
            return found[0], []
        return None, found[:CANDIDATES]

    def _step(self, entry: Entry) -> act.TraceStep | None:
        received, topic, payload = entry
        try:
            a = orjson.loads(payload)
            published = datetime.fromisoformat(a["published"].replace("Z", "+00:00"))
            actor = a["actor"]
            step = act.TraceStep(
                type="Link",
                href=a["id"],
                name=topic.removeprefix(f"{self.root}/"),
                activity=str(a["type"])[:200],
                service=publisher(self.root, topic, actor)[:200],
                actor=str(actor.get("name") or actor["id"])[:200],
                summary=summarize(a.get("object"))[:4096],
                published=act.Instant.of(published.astimezone(UTC)),
                received=act.Instant.of(datetime.fromtimestamp(received, UTC)),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
            return None  # only activities that decoded are kept: never, but never a 500
        return step


def publisher(root: str, topic: str, actor: dict[str, Any]) -> str:
    """Who published on ``topic``: its registry publisher, the service a topic every service
    publishes names (``deadletter/<service>``), else the actor."""
    found = topics.lookup(root, topic)
    if found is not None:
        entry, params = found
        if entry.publisher != "*":
            return entry.publisher
        if "service" in params:
            return params["service"]
    return str(actor.get("name") or actor.get("id") or "?")


def context_of_letter(letter: act.DeadLetter) -> str | None:
    """A dead letter's own correlation id, or the one of the message it parked."""
    if letter.context:
        return str(letter.context)
    parked = letter.object
    if parked.mediaType != "application/activity+json":
        return None
    try:
        original = orjson.loads(parked.content)
    except orjson.JSONDecodeError:  # cut short, or never JSON
        return None
    context = original.get("context") if isinstance(original, dict) else None
    return context if isinstance(context, str) and len(context) <= 200 else None


def _starts(context: str, query: str) -> bool:
    return context.startswith(query) or context.removeprefix("urn:uuid:").startswith(query)


def _cost(entry: Entry) -> int:
    return len(entry[2]) + len(entry[1]) + ENTRY_OVERHEAD


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
