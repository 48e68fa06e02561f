"""The replay ring: the last frames a gateway process sent, so a page can resume on any gateway.

Every gateway hears the same messages from the broker (the same subscriptions, a person's
own topics included), so a frame is named by what it carries, not by which process sent
it: its **key** is a short hash of its topic and its activity's id, the same on every
gateway. A page keeps the keys of the last frames it applied (its *cursor*); on a reconnect,
whichever gateway it reaches finds those frames in its own ring and sends what followed
them that the page has not seen.

Two gateways may hear two messages of different publishers in a different order (a
RabbitMQ cluster routes them on different nodes), so "what followed" starts at the oldest
of the cursor's newest half held here, and leaves out every frame the cursor names: a
frame displaced by fewer places than half the cursor is neither missed nor sent twice
(docs/websocket.md, "Resuming").

The ring also numbers its frames (``seq``, this process's order): a page tells the state
sent with a fresh ``hello`` (numbered at or below ``hello.seq``) from what came after.

A frame meant for one person keeps that person's name here: a replay to someone else
skips it, and so does finding a cursor's frames, so nobody learns of another's frames.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import islice

# Bytes a held frame costs beyond its own: the entry's tuple and deque slot, its number and
# its slot in ``where`` (133 bytes, measured with tracemalloc over 20,000 entries) and its
# key's str (61), rounded up.
ENTRY_OVERHEAD = 240
KEY_CHARS = 12  # hex: 48 bits, so two frames of one ring share a key once in ~10^10
CURSOR_KEYS = 24  # keys a page keeps (the most a reconnect may send; dashboard.js: WINDOW)
# What follows the cursor here starts at the oldest of its newest ANCHOR keys: a frame the
# other gateway sent moved by fewer places than that, either way, is neither missed nor
# sent twice (a frame older than the cursor cannot slip in past the anchor, nor one newer
# than the cursor slip out before it).
ANCHOR = CURSOR_KEYS // 2


def key_of(topic: str, activity_id: str) -> str:
    """A frame's name on every gateway: its topic and its activity's id, hashed short."""
    digest = hashlib.blake2b(f"{topic} {activity_id}".encode(), digest_size=KEY_CHARS // 2)
    return digest.hexdigest()


class ReplayRing:
    __slots__ = ("budget", "entries", "first", "held", "seq", "started", "where")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.seq = 0  # the number of the newest frame; 0: none yet
        self.first = 1  # the oldest number still held (seq + 1 when nothing is)
        self.held = 0  # bytes held, overhead included
        # key, for whom (None: all), heard live (not a retained message from before this
        # gateway subscribed), the frame
        self.entries: deque[tuple[str, str | None, bool, bytes]] = deque()
        self.where: dict[str, int] = {}  # key -> its number, for every frame held
        self.started = time.time()  # when this ring began to hear the bus

    def add(self, key: str, user: str | None, data: bytes, live: bool = True) -> int | None:
        """Hold a framed message (``user``: its only recipient, or None for all; ``live``:
        False for a retained message the broker sent on subscribing, which proves nothing
        about what this gateway heard before); its number, or None when a frame of that key
        is already held (a redelivery: sent once)."""
        if key in self.where:
            return None
        self.seq += 1
        self.entries.append((key, user, live, data))
        self.where[key] = self.seq
        self.held += len(data) + ENTRY_OVERHEAD
        while self.held > self.budget:  # the newest frame too, if it alone is over budget
            old_key, _, _, old = self.entries.popleft()
            del self.where[old_key]
            self.held -= len(old) + ENTRY_OVERHEAD
            self.first += 1
        return self.seq

    def number(self, key: str) -> int | None:
        return self.where.get(key)

    def recent(self, user: str | None, n: int = CURSOR_KEYS) -> list[str]:
        """The keys of the newest ``n`` frames ``user`` may see, oldest first: the cursor of a
        page that joins now (or is rendered now)."""
        keys: list[str] = []
        for key, who, _, _ in reversed(self.entries):
            if who is None or who == user:
                keys.append(key)
                if len(keys) == n:
                    break
        keys.reverse()
        return keys

    def _visible(self, keys: Iterable[str], user: str | None, live: bool = False) -> list[int]:
        """The numbers of the frames named that are held and ``user`` may see (``live``:
        and that this gateway heard as they were published)."""
        found = []
        for key in keys:
            seq = self.where.get(key)
            if seq is None:
                continue
            _, who, heard, _ = self.entries[seq - self.first]
            if who in (None, user) and (heard or not live):
                found.append(seq)
        return found

    def holds_newest(self, cursor: Sequence[str], user: str | None) -> bool:
        """Whether this gateway holds the cursor's newest frame, heard as it was published:
        it was listening then, so it heard what followed. (Not yet, never, or no longer: it
        cannot tell what the page missed.) The cursor's older frames may predate it."""
        return bool(self._visible(cursor[-1:], user, live=True))

    def why_not(self, cursor: Sequence[str], user: str | None) -> str | None:
        """Why a page whose cursor is ``cursor`` cannot resume here; None if it can."""
        if not cursor:
            return "the cursor names no frame to resume after (an older page's, or an empty one)"
        if self.holds_newest(cursor, user):
            return None
        since = time.strftime("%H:%M:%S UTC", time.gmtime(self.started))
        if self.first == 1:
            return f"this gateway has not heard the frames the page saw last (it began at {since})"
        return (
            "the frames the page saw last are not held here: too old, or missed "
            f"(this gateway holds its newest {len(self.entries)} frames)"
        )

    def after(self, cursor: Sequence[str], user: str | None) -> list[bytes]:
        """The framed messages held after the anchor (the oldest here of the cursor's newest
        ``ANCHOR`` frames), that the cursor does not name and ``user`` may see, in this
        ring's order (``user`` None: a signed-out socket, the frames for everyone only).
        Check ``why_not`` first."""
        found = self._visible(cursor[-ANCHOR:], user)
        if not found:
            return []
        seen = set(cursor)
        start = min(found) - self.first + 1
        return [
            data
            for key, who, _, data in islice(self.entries, start, None)
            if (who is None or who == user) and key not in seen
        ]
