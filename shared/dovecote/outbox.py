"""A durable outbox: a publish that was promised to someone survives a crash of this process.

paho keeps QoS 1 publishes made while the broker is away in memory, which is enough for
events derived from other events: the input is acknowledged only after its handler ran, so
a crash redelivers the input and the handler publishes again. It is not enough where the
promise was made to someone outside the bus: the gateway answered an upload with 201 or a
command with 202, and a crash before the broker's PUBACK would lose the event for good.

Such a publish is written here first (one SQLite row), then handed to paho; the row is
deleted when the broker acknowledges it, and every row still here when the worker starts
is sent again. A crash between the PUBACK and the delete sends a message twice, with the
same activity id: subscribers deduplicate on it (at least once, exactly once in effect).

Bounded: past ``limit`` rows ``add`` raises ``OutboxFull``, which the gateway answers with
503, so a long broker outage cannot fill the disk. Durable against a crash of the process
(WAL, ``synchronous=NORMAL``, like the points ledger); a power cut may lose the last commits,
as it may lose the uploaded file itself, which is not fsynced either.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dovecote.config import Settings
from dovecote.link import Link
from dovecote.mqtt import BusError
from dovecote.sqlite import open_db
from dovecote.transport import Transport

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos     INTEGER NOT NULL,
    retain  INTEGER NOT NULL
);
"""


class OutboxFull(BusError):
    """The outbox holds ``limit`` messages the broker has not acknowledged; ``str()`` says so."""


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    def __init__(self, path: Path, limit: int = 10_000) -> None:
        self.path = path
        self.limit = limit
        self._db: sqlite3.Connection | None = None
        self._count = 0

    def open(self) -> list[Pending]:
        """Open (or create) the outbox; returns what a previous run left unacknowledged."""
        db = self._db = open_db(self.path, SCHEMA)  # autocommit: one row, one commit
        rows = db.execute("SELECT seq, topic, payload, qos, retain FROM outbox ORDER BY seq")
        left = [Pending(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows]
        self._count = len(left)
        return left

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __len__(self) -> int:
        return self._count

    def add(self, topic: str, payload: bytes, qos: int, retain: bool) -> int:
        """Write one message before it is sent; its sequence number identifies it."""
        if self._db is None:
            raise BusError("the outbox is not open")
        if self._count >= self.limit:
            raise OutboxFull(
                f"the outbox holds {self._count} messages the broker has not acknowledged "
                f"(limit {self.limit}); is the broker down?"
            )
        seq = self._db.execute(
            "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
            (topic, payload, qos, int(retain)),
        ).lastrowid
        self._count += 1
        assert seq is not None
        return seq

    def remove(self, seq: int) -> None:
        """The broker acknowledged the message: it is the broker's from now on."""
        if self._db is None:
            return  # closing: the row stays and is sent again at the next start
        if self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,)).rowcount:
            self._count -= 1


class Durable:
    """A worker's outbox (``Service.outbox``) between its service and its connection:
    ``publish`` is ``Bus``'s durable send; ``resend`` at start, ``close`` at stop."""

    def __init__(self, settings: Settings, client_id: str, conn: Transport, link: Link) -> None:
        folder = settings.get_str("DOVECOTE_OUTBOX_DIR", str(settings.data_dir / "outbox"))
        self.store = Outbox(
            Path(folder) / f"{client_id}.sqlite3",
            settings.get_int("DOVECOTE_OUTBOX_LIMIT", 10_000, 1, 1_000_000),
        )
        self.conn = conn
        self.link = link

    def __len__(self) -> int:
        return len(self.store)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        on_acked: Callable[[], None] | None = None,
    ) -> None:
        """Outbox first, then the broker; the row goes when the broker acknowledges it (then
        ``on_acked`` runs, on the loop)."""
        store = self.store
        seq = store.add(topic, payload, qos, retain)

        def acked() -> None:
            store.remove(seq)
            if on_acked is not None:
                on_acked()

        try:
            self.conn.publish(topic, payload, qos, retain, on_acked=acked)
        except BusError:
            store.remove(seq)
            raise
        if not self.link.up:
            self.link.changed()  # one more waits: whoever shows the outbox's depth says so

    def resend(self, log: logging.Logger) -> None:
        """What a previous run of this worker promised and the broker never acknowledged."""
        left = self.store.open()
        for p in left:
            done = functools.partial(self.store.remove, p.seq)
            self.conn.publish(p.topic, p.payload, p.qos, p.retain, on_acked=done)
        if left:
            log.warning(
                "sending again %d message(s) from the outbox %s that the broker had not "
                "acknowledged when this worker last stopped",
                len(left),
                self.store.path,
            )

    def close(self, log: logging.Logger) -> None:
        if len(self.store):
            log.warning(
                "%d message(s) not acknowledged by the broker stay in the outbox %s; "
                "they are sent at the next start",
                len(self.store),
                self.store.path,
            )
        self.store.close()
