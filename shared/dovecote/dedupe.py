"""What a worker remembers of the activities it handled: at most once per (topic, id).

``Dispatcher`` (``dovecote.dispatch``) asks before running a handler; a redelivery
(``dovecote.redelivery``) forgets the id of the letter it runs again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from dovecote import activity as act

SEEN_IDS = 20_000  # per worker; redeliveries arrive within seconds, not after 20k messages

Seen = tuple[str, str]  # (topic, activity id): an id only ever stands for one topic's activity
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fingerprint(activity: Any) -> int:
    """What two messages with one id must share to be the same activity: everything
    decoded but ``published``, which a publisher's re-run (a derived id, made again after
    a crash before its ack) sets anew. ``hash``: salted per process, only kept in memory."""
    return hash(act.encode(msgspec.structs.replace(activity, published=_EPOCH)))


class SeenIds:
    """A bounded memory of handled activities, (topic, id) -> fingerprint (an
    insertion-ordered dict as an LRU)."""

    def __init__(self, size: int = SEEN_IDS) -> None:
        self._ids: dict[Seen, int] = {}
        self._size = size

    def __contains__(self, key: Seen) -> bool:
        return key in self._ids

    def get(self, key: Seen) -> int | None:
        return self._ids.get(key)

    def add(self, key: Seen, print_: int = 0) -> None:
        self._ids[key] = print_
        if len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]

    def discard(self, key: Seen) -> None:
        self._ids.pop(key, None)
