"""Each person's inbox: their last notifications, which of them are read.

The notifier owns notifications, so it keeps them: one row per (person, notification id),
the notification as published. A notification made twice (its cause redelivered) is the
same id and inserts nothing. Only the newest ``size`` per person are kept.

Reading marks a notification *and every older one* as read, so the unread ones are always
the newest: a count says which they are.

Where it lives: ``INBOX_DB`` (a SQLite file, the default ``<data>/inbox.sqlite3``), or the
``inbox`` schema of ``DATABASE_URL``, shared by every notifier worker on every machine
(``dovecote.store``). The notifications of one turn of the event loop commit together
(``add``); ``keep`` is one in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text

from dovecote.store import Store
from dovecote.store.coalesce import Coalescer

INSERT = text(
    "INSERT INTO notes (person, id, note, read) VALUES (:person, :id, :note, 0) "
    "ON CONFLICT (person, id) DO NOTHING"
)
# Past the newest ``size``: the seq of the newest one too many, and every older one.
TRIM = text(
    "DELETE FROM notes WHERE person = :person AND seq <= (SELECT seq FROM notes "
    "WHERE person = :person ORDER BY seq DESC LIMIT 1 OFFSET :size)"
)
NEWEST = text("SELECT note FROM notes WHERE person = :person ORDER BY seq DESC LIMIT :limit")
COUNTS = text(
    "SELECT count(*), count(*) - coalesce(sum(read), 0) FROM notes WHERE person = :person"
)
SEQ_OF = text("SELECT seq FROM notes WHERE person = :person AND id = :id")
READ_ALL = text("UPDATE notes SET read = 1 WHERE person = :person AND read = 0")
READ_UP_TO = text("UPDATE notes SET read = 1 WHERE person = :person AND read = 0 AND seq <= :seq")


@dataclass(frozen=True)
class Counts:
    total: int
    unread: int


@dataclass(frozen=True)
class Note:
    """One notification for one person, as published."""

    person: str
    id: str
    note: bytes


def keep_notes(conn: Connection, notes: Sequence[Note], size: int) -> list[bool]:
    """Store the notifications; for each, True if it is new. Older ones past ``size`` go."""
    fresh = []
    for n in notes:
        new = bool(conn.execute(INSERT, {"person": n.person, "id": n.id, "note": n.note}).rowcount)
        if new:
            conn.execute(TRIM, {"person": n.person, "size": size})
        fresh.append(new)
    return fresh


class InboxStore(Store):
    name = "inbox"
    migrations = Path(__file__).with_name("migrations")

    def open(self) -> InboxStore:
        super().open()
        self._group = Coalescer(self.db)
        return self

    async def add(self, notes: Sequence[Note], size: int) -> list[bool]:
        """``keep`` for several, committed with the others of this turn of the event loop."""
        notes = list(notes)
        return await self._group.run(lambda conn: keep_notes(conn, notes, size))

    def keep(self, person: str, note_id: str, note: bytes, size: int) -> bool:
        """Store a notification; True if it is new. Older ones past ``size`` go."""
        with self.db.transaction() as conn:
            return keep_notes(conn, [Note(person, note_id, note)], size)[0]

    def newest(self, person: str, limit: int) -> list[bytes]:
        with self.db.transaction() as conn:
            rows = conn.execute(NEWEST, {"person": person, "limit": limit}).all()
        return [bytes(r[0]) for r in rows]

    def counts(self, person: str) -> Counts:
        with self.db.transaction() as conn:
            total, unread = conn.execute(COUNTS, {"person": person}).one()
        return Counts(int(total), int(unread))

    def mark_read(self, person: str, up_to: str | None) -> int:
        """Mark ``up_to`` and every older notification read (all of them when ``up_to`` is
        None or no longer kept); how many changed."""
        with self.db.transaction() as conn:
            seq = None
            if up_to is not None:
                seq = conn.execute(SEQ_OF, {"person": person, "id": up_to}).scalar()
            if seq is None:
                return conn.execute(READ_ALL, {"person": person}).rowcount
            return conn.execute(READ_UP_TO, {"person": person, "seq": seq}).rowcount
