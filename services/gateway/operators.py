"""Who operates the federation, and what the gateway keeps for them.

Operators are people with an account whose user id is in ``OPERATORS`` (comma-separated):
they see the operations page, read ``/metrics`` with their session or token, and may list
and replay dead letters and read any trace (a trace shows everyone's notifications, so it
is theirs only). A scraper reads ``/metrics`` with ``METRICS_TOKEN`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dovecote.config import ConfigError
from dovecote.errors import BusError
from dovecote.topics import P, Topic, TopicError, check_id
from services.gateway.questions import Questions
from services.gateway.telemetry import Fleet
from services.gateway.traces import TraceIndex

TRACE_INDEX_BYTES = 8 * 1024 * 1024  # default budget of the trace index
ASK_TIMEOUT = 5.0  # seconds the page waits for the deadletters service


def operators_from(text: str) -> frozenset[str]:
    """``OPERATORS``: user ids, comma-separated; a malformed one is a configuration error."""
    found = set()
    for name in text.split(","):
        if name.strip():
            try:
                found.add(check_id(name.strip().lower(), "OPERATORS user id"))
            except TopicError as exc:
                raise ConfigError(str(exc)) from None
    return frozenset(found)


def _unanswered(entry: Topic[P], command: P, /) -> None:
    raise BusError("no bus here")


@dataclass
class Operations:
    operators: frozenset[str] = frozenset()
    metrics_token: str | None = None  # None: only operators read /metrics
    fleet: Fleet = field(default_factory=Fleet)
    traces: TraceIndex = field(default_factory=lambda: TraceIndex(TRACE_INDEX_BYTES, "dovecote"))
    questions: Questions = field(default_factory=lambda: Questions(_unanswered, ASK_TIMEOUT))
