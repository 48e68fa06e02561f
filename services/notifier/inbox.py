"""Each person's inbox: their last notifications, which of them are read. SQLite.

The notifier owns notifications, so it keeps them: one row per (person, notification id),
the notification as published. A notification made twice (its cause redelivered) is the
same id and inserts nothing. Only the newest ``size`` per person are kept.

Reading marks a notification *and every older one* as read, so the unread ones are always
the newest: a count says which they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from dovecote.sqlite import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order
    person TEXT NOT NULL,                      -- the user id notified
    id     TEXT NOT NULL,                      -- the notification's activity id
    note   BLOB NOT NULL,                      -- the notification, as published
    read   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (person, id)
);
CREATE INDEX IF NOT EXISTS notes_person ON notes (person, seq);
"""


@dataclass(frozen=True)
class Counts:
    total: int
    unread: int


class InboxStore(SqliteFile):
    schema = SCHEMA

    def keep(self, person: str, note_id: str, note: bytes, size: int) -> bool:
        """Store a notification; True if it is new. Older ones past ``size`` go."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            new = self.db.execute(
                "INSERT INTO notes (person, id, note) VALUES (?, ?, ?) "
                "ON CONFLICT (person, id) DO NOTHING",
                (person, note_id, note),
            ).rowcount
            if new:
                self.db.execute(
                    "DELETE FROM notes WHERE person = ? AND seq <= (SELECT seq FROM notes "
                    "WHERE person = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (person, person, size),
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return bool(new)

    def newest(self, person: str, limit: int) -> list[bytes]:
        rows = self.db.execute(
            "SELECT note FROM notes WHERE person = ? ORDER BY seq DESC LIMIT ?", (person, limit)
        )
        return [bytes(r[0]) for r in rows]

    def counts(self, person: str) -> Counts:
        total, unread = self.db.execute(
            "SELECT count(*), count(*) - coalesce(sum(read), 0) FROM notes WHERE person = ?",
            (person,),
        ).fetchone()
        return Counts(int(total), int(unread))

    def mark_read(self, person: str, up_to: str | None) -> int:
        """Mark ``up_to`` and every older notification read (all of them when ``up_to`` is
        None or no longer kept); how many changed."""
        seq = None
        if up_to is not None:
            row = self.db.execute(
                "SELECT seq FROM notes WHERE person = ? AND id = ?", (person, up_to)
            ).fetchone()
            seq = row[0] if row else None
        if seq is None:
            cur = self.db.execute(
                "UPDATE notes SET read = 1 WHERE person = ? AND read = 0", (person,)
            )
        else:
            cur = self.db.execute(
                "UPDATE notes SET read = 1 WHERE person = ? AND read = 0 AND seq <= ?",
                (person, seq),
            )
        return cur.rowcount
