"""The points ledger: one row per award, the activity id as its identity.

``UNIQUE (cause, rule)`` is what makes points exactly-once: a redelivered event (after a
crash, a restart, a duplicate publish, on another worker or machine of the pool) inserts
nothing and counts nothing. Totals are sums over the rows, never a counter that a replay
could bump.

Where it lives: ``POINTS_DB`` (a SQLite file, the default ``<data>/points.sqlite3``), or the
``points`` schema of ``DATABASE_URL`` shared by every machine (``dovecote.store``). Awards
asked for in one turn of the event loop commit together (``award``: one commit for many
messages); ``record`` is one award in a transaction of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text

from dovecote import activity as act
from dovecote.store import Store
from dovecote.store.coalesce import Coalescer

INSERT = text(
    "INSERT INTO awards (cause, rule, person, username, name, points, context, awarded_at) "
    "VALUES (:cause, :rule, :person, :username, :name, :points, :context, :at) "
    "ON CONFLICT (cause, rule) DO NOTHING"
)
TOTAL = text("SELECT COALESCE(SUM(points), 0) FROM awards WHERE person = :person")
LEADERS = text(
    """
    SELECT person, SUM(points) AS total, MIN(id) AS first,
           (SELECT username FROM awards b WHERE b.person = a.person ORDER BY id DESC LIMIT 1),
           (SELECT name FROM awards b WHERE b.person = a.person ORDER BY id DESC LIMIT 1)
    FROM awards a GROUP BY person ORDER BY total DESC, first ASC LIMIT :limit
    """
)


@dataclass(frozen=True)
class Standing:
    person: str
    username: str | None
    name: str | None
    points: int


@dataclass(frozen=True)
class Award:
    cause: str
    rule: str
    person: str
    points: int
    username: str | None = None
    name: str | None = None
    context: str | None = None

    def write(self, conn: Connection) -> int | None:
        """The person's new total, or None when this award was counted already."""
        inserted = conn.execute(
            INSERT,
            {
                "cause": self.cause,
                "rule": self.rule,
                "person": self.person,
                "username": self.username,
                "name": self.name,
                "points": self.points,
                "context": self.context,
                "at": act.now(),
            },
        ).rowcount
        if not inserted:
            return None
        return int(conn.execute(TOTAL, {"person": self.person}).scalar_one())


class Ledger(Store):
    name = "points"
    migrations = Path(__file__).with_name("migrations")

    def open(self) -> Ledger:
        super().open()
        self._group = Coalescer(self.db)
        return self

    async def award(self, award: Award) -> int | None:
        """The person's new total, or None when counted already; committed with the other
        awards of this turn of the event loop."""
        return await self._group.run(award.write)

    def record(self, award: Award) -> int | None:
        """One award in a transaction of its own (tools and tests)."""
        with self.db.transaction() as conn:
            return award.write(conn)

    def total(self, person: str) -> int:
        with self.db.transaction() as conn:
            return int(conn.execute(TOTAL, {"person": person}).scalar_one())

    def count(self) -> int:
        with self.db.transaction() as conn:
            return int(conn.execute(text("SELECT COUNT(*) FROM awards")).scalar_one())

    def leaderboard(self, limit: int = 10) -> list[Standing]:
        """Most points first; ties by who got there first. Names are each person's latest."""
        with self.db.transaction() as conn:
            rows = conn.execute(LEADERS, {"limit": limit}).all()
        return [Standing(r[0], r[3], r[4], int(r[1])) for r in rows]
