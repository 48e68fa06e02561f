"""Who operates the federation, and what the gateway keeps for them.

Operators are people whose account is marked so (``dovecote admin gateway add --operator``, or
``dovecote admin gateway operator <id>``), or whose user id is in ``OPERATORS``
(comma-separated), which the gateway checks at start-up: every name there must be an
account already, so no one becomes an operator by signing up under a name an operator
list was waiting for. Operators see the operations page, read ``/metrics`` with their
session or token, may list and replay dead letters and read any trace (a trace shows
everyone's notifications, so it is theirs only), and make invitations (``SIGNUP=invite``).
A scraper reads ``/metrics`` with ``METRICS_TOKEN`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dovecote.config import ConfigError
from dovecote.errors import BusError
from dovecote.topics import P, Topic, TopicError, check_id
from services.gateway.accounts.credentials import Person
from services.gateway.accounts.people import People
from services.gateway.bus.questions import Questions
from services.gateway.operations.telemetry import Fleet
from services.gateway.operations.traces import TraceIndex

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
    operators: frozenset[str] = frozenset()  # OPERATORS: accounts checked at start-up
    metrics_token: str | None = None  # None: only operators read /metrics
    fleet: Fleet = field(default_factory=Fleet)
    traces: TraceIndex = field(default_factory=lambda: TraceIndex(TRACE_INDEX_BYTES, "dovecote"))
    questions: Questions = field(default_factory=lambda: Questions(_unanswered, ASK_TIMEOUT))

    def is_operator(self, who: Person | None) -> bool:
        return who is not None and (who.operator or who.id in self.operators)

    def unknown(self, people: People) -> list[str]:
        """The names in ``OPERATORS`` that are not accounts: the gateway refuses to start."""
        return sorted(name for name in self.operators if people.get(name) is None)
