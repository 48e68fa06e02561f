"""The replay ring: the last frames a gateway process sent, so a browser can resume.

Every frame the hub forwards from the bus gets the next number of this process's sequence;
the ring keeps the newest ones, framed (the very bytes written to the sockets, not a copy),
up to a byte budget. A page that reconnects says the last number it saw and gets what
followed, from here, or learns that it cannot (``None``) and reloads its state.

Numbers are only comparable within one process: a restarted gateway starts over, under a
new ``epoch`` (random), and a number from another epoch never resumes.

A frame meant for one person keeps that person's name here: a replay to someone else
skips it, so a replayed buffer never shows anyone another person's notification.
"""

from __future__ import annotations

import secrets
from collections import deque
from itertools import islice

ENTRY_OVERHEAD = 100  # bytes a held frame costs beyond its own (tuple, deque slot, int)


class ReplayRing:
    __slots__ = ("budget", "entries", "epoch", "first", "held", "seq")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.epoch = secrets.token_hex(8)
        self.seq = 0  # the number of the newest frame; 0: none yet
        self.first = 1  # the oldest number still held (seq + 1 when nothing is)
        self.held = 0  # bytes held, overhead included
        self.entries: deque[tuple[int, str | None, bytes]] = deque()

    def add(self, user: str | None, data: bytes) -> int:
        """Hold a framed message (``user``: its only recipient, or None for all); its number."""
        self.seq += 1
        self.entries.append((self.seq, user, data))
        self.held += len(data) + ENTRY_OVERHEAD
        while self.held > self.budget:  # the newest frame too, if it alone is over budget
            _, _, old = self.entries.popleft()
            self.held -= len(old) + ENTRY_OVERHEAD
            self.first = self.entries[0][0] if self.entries else self.seq + 1
        return self.seq

    def why_not(self, epoch: str, since: int) -> str | None:
        """Why a page that saw up to ``since`` under ``epoch`` cannot resume; None if it can."""
        if epoch != self.epoch:
            return "another epoch: the gateway restarted, or this is another of its workers"
        if since > self.seq:
            return f"seq {since} was never sent (the newest is {self.seq})"
        if since + 1 < self.first:
            return f"seq {since} is too old: the gateway holds {self.first} to {self.seq}"
        return None

    def after(self, since: int, user: str | None) -> list[bytes]:
        """The framed messages numbered above ``since`` that ``user`` may see, in order
        (``user`` None: a signed-out socket, the frames for everyone only).

        Check ``why_not`` first: frames already dropped cannot be returned.
        """
        entries = self.entries
        if not entries or since >= self.seq:
            return []
        start = max(0, since + 1 - entries[0][0])  # numbers are consecutive in the ring
        return [data for _, who, data in islice(entries, start, None) if who in (None, user)]
