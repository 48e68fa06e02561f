"""The points ledger: one row per award, the activity id as its identity.

``UNIQUE (cause, rule)`` is what makes points exactly-once: a redelivered event (after a
crash, a restart, a duplicate publish, on another worker or machine of the pool) inserts
nothing and counts nothing. Totals are sums over the rows, never a counter that a replay
could bump.

Where it lives: ``POINTS_DB`` (a SQLite file, the default ``<data>/points.sqlite3``), or the
``points`` schema of ``DATABASE_URL`` shared by every machine (``dovecote.store``). Awards
asked for in one turn of the event loop are written together (``award``): one multi-row
insert that says which were new, one query for the totals of the people in it, one
commit, however many messages the turn read; on PostgreSQL each statement is a round trip
and each commit a wait for the disk. ``record`` is one award in a transaction of its own.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Insert, Integer, MetaData, Table, Text, bindparam, text
from sqlalchemy.dialects import postgresql, sqlite

from dovecote import activity as act
from dovecote.store import Store
from dovecote.store.coalesce import Batcher

TOTAL = text("SELECT COALESCE(SUM(points), 0) FROM awards WHERE person = :person")
TOTALS = text(
    "SELECT person, SUM(points) FROM awards WHERE person IN :persons GROUP BY person"
).bindparams(bindparam("persons", expanding=True))
# The columns a batch inserts (migrations/ has the table's whole definition).
AWARDS = Table(
    "awards",
    MetaData(),
    *(Column(c, Text) for c in ("cause", "rule", "person", "username", "name", "context")),
    Column("points", Integer),
    Column("awarded_at", Text),
)
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

    def row(self, at: str) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "rule": self.rule,
            "person": self.person,
            "username": self.username,
            "name": self.name,
            "points": self.points,
            "context": self.context,
            "awarded_at": at,
        }


def insert_new(conn: Connection) -> Insert:
    """INSERT ... ON CONFLICT (cause, rule) DO NOTHING RETURNING cause, rule: the same
    statement in both dialects, built by each one's own construct."""
    if conn.dialect.name == "postgresql":
        return (
            postgresql.insert(AWARDS)
            .on_conflict_do_nothing(index_elements=["cause", "rule"])
            .returning(AWARDS.c.cause, AWARDS.c.rule)
        )
    return (
        sqlite.insert(AWARDS)
        .on_conflict_do_nothing(index_elements=["cause", "rule"])
        .returning(AWARDS.c.cause, AWARDS.c.rule)
    )


def write_awards(conn: Connection, awards: list[Award]) -> list[int | None]:
    """Each award's person's new total, in order; None for one counted already (before,
    or earlier in this same batch)."""
    at = act.now()
    new = {(r[0], r[1]) for r in conn.execute(insert_new(conn), [a.row(at) for a in awards])}
    persons = sorted({a.person for a in awards})
    final = {str(r[0]): int(r[1]) for r in conn.execute(TOTALS, {"persons": persons})}
    owners: list[bool] = []  # the first of the batch with a new key made its row
    for award in awards:
        key = (award.cause, award.rule)
        owners.append(key in new)
        new.discard(key)
    totals: list[int | None] = [None] * len(awards)
    after: defaultdict[str, int] = defaultdict(int)  # points of a person's later awards
    for i in range(len(awards) - 1, -1, -1):
        if owners[i]:
            person = awards[i].person
            totals[i] = final[person] - after[person]
            after[person] += awards[i].points
    return totals


class Ledger(Store):
    name = "points"
    migrations = Path(__file__).with_name("migrations")

    def open(self) -> Ledger:
        super().open()
        self._group = Batcher(self.db, write_awards)
        return self

    async def award(self, award: Award) -> int | None:
        """The person's new total, or None when counted already; committed with the other
        awards of this turn of the event loop."""
        return await self._group.add(award)

    def record(self, award: Award) -> int | None:
        """One award in a transaction of its own (tools and tests)."""
        with self.db.transaction() as conn:
            return write_awards(conn, [award])[0]

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
