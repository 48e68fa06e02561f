"""The points ledger: one row per award in SQLite, the activity id as its identity.

``UNIQUE (cause, rule)`` is what makes points exactly-once: a redelivered event (after a
crash, a restart, a duplicate publish) inserts nothing and counts nothing. Totals are sums
over the rows, never a counter that a replay could bump.

WAL with ``synchronous=NORMAL``: a commit is durable against a crash of this process (the
failure that redelivers events); only a power cut may lose the last commits. Each award is
one small transaction (~0.1 ms), so the service runs it on the event loop directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from dovecote.sqlite import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS awards (
    cause      TEXT NOT NULL,     -- the id of the activity that earned it
    rule       TEXT NOT NULL,
    person     TEXT NOT NULL,     -- the person's AS2 id (a URL)
    username   TEXT,
    name       TEXT,
    points     INTEGER NOT NULL,
    context    TEXT,
    awarded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (cause, rule)
);
CREATE INDEX IF NOT EXISTS awards_person ON awards (person);
"""


@dataclass(frozen=True)
class Standing:
    person: str
    username: str | None
    name: str | None
    points: int


class Ledger(SqliteFile):
    schema = SCHEMA  # autocommit: the writes below open their transactions explicitly

    def record(
        self,
        cause: str,
        rule: str,
        person: str,
        points: int,
        *,
        username: str | None = None,
        name: str | None = None,
        context: str | None = None,
    ) -> int | None:
        """The person's new total, or None when this award was already counted."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            inserted = db.execute(
                "INSERT INTO awards (cause, rule, person, username, name, points, context) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (cause, rule) DO NOTHING",
                (cause, rule, person, username, name, points, context),
            ).rowcount
            total = self.total(person) if inserted else None
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return total

    def total(self, person: str) -> int:
        row = self.db.execute(
            "SELECT COALESCE(SUM(points), 0) FROM awards WHERE person = ?", (person,)
        ).fetchone()
        return int(row[0])

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM awards").fetchone()[0])

    def leaderboard(self, limit: int = 10) -> list[Standing]:
        """Most points first; ties by who got there first. Names are each person's latest."""
        rows = self.db.execute(
            """
            SELECT person, SUM(points) AS total, MIN(rowid) AS first,
                   (SELECT username FROM awards b WHERE b.person = a.person
                    ORDER BY rowid DESC LIMIT 1),
                   (SELECT name FROM awards b WHERE b.person = a.person
                    ORDER BY rowid DESC LIMIT 1)
            FROM awards a GROUP BY person ORDER BY total DESC, first ASC LIMIT ?
            """,
            (limit,),
        ).fetchall()
        return [Standing(r[0], r[3], r[4], int(r[1])) for r in rows]
