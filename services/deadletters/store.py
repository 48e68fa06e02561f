"""The dead-letter store: one row per letter, the letter's activity id its identity.

A letter redelivered by the broker (this service was killed before its ack) inserts
nothing. The whole letter is kept as published, so a replay sends back exactly what the
failing service parked. Where: ``DEADLETTERS_DB`` (a SQLite file, WAL: durable against a
crash of this process), or the ``deadletters`` schema of ``DATABASE_URL``, shared by the
keepers on every machine (``dovecote.store``).

Bounded: at most ``max_bytes`` and no letter older than ``max_age`` seconds since it was
kept here (this machine's clock, not the parker's). Past either, the oldest kept go first;
every one dropped is returned to the caller, which counts and logs it.

What the byte cap measures (``used_bytes``): in a SQLite file, the file's own pages its rows
and indexes use (``page_count`` less its free pages, which it reuses before the file grows),
not an estimate of each row: so the file stays within one letter (and a few pages) of the
cap, whatever the letters' shapes, and beside it only the write-ahead log (checkpointed every
256 pages and cut back to 1 MiB). On PostgreSQL, whose files shrink only when it vacuums
them, the bytes the letters hold (``held``). What the letters hold is counted in the
``held`` row, in the same transaction as each insert and delete, so keepers sharing the
store agree on it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, event, text

from dovecote.store import Place, Store
from dovecote.store.coalesce import Coalescer

WAL_PAGES = 256  # SQLite's default is 1000 (4 MiB of 4 KiB pages)
WAL_BYTES = 1024**2
ROW_OVERHEAD = 64  # bytes a row costs beyond its fields' (SQLite's record and index)

COLUMNS = "id, service, topic, reason, attempts, size, published, letter, replays, last_replayed"
INSERT = text(
    f"INSERT INTO letters ({COLUMNS}, kept_at, bytes) VALUES (:id, :service, :topic, :reason, "
    ":attempts, :size, :published, :letter, 0, NULL, :kept_at, :bytes) "
    "ON CONFLICT (id) DO NOTHING"
)
HOLD = text("UPDATE held SET letters = letters + :letters, bytes = bytes + :bytes WHERE one = 1")
# Taken first by every write that may drop letters: one keeper at a time prunes (PostgreSQL
# locks the row until commit; a SQLite transaction holds the whole file already).
LOCK = text("UPDATE held SET letters = letters WHERE one = 1")
HELD = text("SELECT letters, bytes FROM held WHERE one = 1")
# SQLite: the bytes of the file's pages in use (its free pages are reused first).
USED_PAGES = text(
    "SELECT (p.page_count - f.freelist_count) * s.page_size "
    "FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s"
)
RETURNING = "RETURNING id, service, topic, bytes, kept_at"
EXPIRE = text(f"DELETE FROM letters WHERE kept_at < :cutoff {RETURNING}")
OLDEST = text(f"DELETE FROM letters WHERE seq = (SELECT min(seq) FROM letters) {RETURNING}")
RECOUNT = text(
    "UPDATE held SET letters = (SELECT count(*) FROM letters), "
    "bytes = (SELECT coalesce(sum(bytes), 0) FROM letters) WHERE one = 1"
)
GET = text(f"SELECT {COLUMNS} FROM letters WHERE id = :id")
REPLAYED = text("UPDATE letters SET replays = replays + 1, last_replayed = :when WHERE id = :id")


@dataclass(frozen=True)
class Letter:
    id: str
    service: str
    topic: str
    reason: str
    attempts: int
    size: int
    published: str
    letter: bytes
    replays: int
    last_replayed: str | None


@dataclass(frozen=True)
class Dropped:
    """A letter the store let go to stay within its bounds."""

    id: str
    service: str
    topic: str
    bytes: int
    kept_at: float
    why: Literal["bytes", "age"]  # over the byte cap, or older than the age limit


def _dropped(row: Sequence[Any], why: Literal["bytes", "age"]) -> Dropped:
    id_, service, topic, size, kept_at = row
    return Dropped(str(id_), str(service), str(topic), int(size), float(kept_at), why)


def row_bytes(letter: Letter) -> int:
    """What one letter counts for against the byte cap."""
    fields = (letter.id, letter.service, letter.topic, letter.reason, letter.published)
    return len(letter.letter) + sum(len(f.encode()) for f in fields) + ROW_OVERHEAD


class DeadLetterStore(Store):
    name = "deadletters"
    migrations = Path(__file__).with_name("migrations")

    def __init__(self, where: Place, max_bytes: int, max_age: float) -> None:
        super().__init__(where)
        self.max_bytes = max_bytes
        self.max_age = max_age

    def open(self) -> DeadLetterStore:
        super().open()
        if not self.place.shared:
            # A flood's inserts and drops pass through the write-ahead log: checkpointed
            # every WAL_PAGES and cut back to WAL_BYTES after, it adds ~1 MiB to the file,
            # not 4. Per connection: the pool's (the migration's) go, new ones get them.
            event.listen(self.db.engine, "connect", _bounded_wal)
            self.db.engine.dispose()
        # A flood's letters commit a few hundred KiB at a time: the log stays near WAL_BYTES.
        self._group = Coalescer(self.db, limit=WAL_BYTES // 2)
        with self.db.transaction() as conn:  # what is held, counted once from the rows
            conn.execute(LOCK)
            conn.execute(RECOUNT)
        return self

    async def add(self, letter: Letter) -> tuple[bool, list[Dropped]]:
        """``keep``, committed with the other letters of this turn of the event loop."""
        now = time.time()
        return await self._group.run(lambda conn: self._keep(conn, letter, now), row_bytes(letter))

    def keep(self, letter: Letter, now: float | None = None) -> tuple[bool, list[Dropped]]:
        """Keep the letter (True if it is new), then drop what is past the bounds, oldest
        first (the new letter too, when it alone is over the cap)."""
        now = time.time() if now is None else now
        with self.db.transaction() as conn:
            return self._keep(conn, letter, now)

    def _keep(self, conn: Connection, letter: Letter, now: float) -> tuple[bool, list[Dropped]]:
        counted = row_bytes(letter)
        new = conn.execute(
            INSERT,
            {
                "id": letter.id,
                "service": letter.service,
                "topic": letter.topic,
                "reason": letter.reason,
                "attempts": letter.attempts,
                "size": letter.size,
                "published": letter.published,
                "letter": letter.letter,
                "kept_at": now,
                "bytes": counted,
            },
        ).rowcount
        if not new:  # a copy: nothing changed (the age limit runs in ``prune`` too)
            return False, []
        conn.execute(HOLD, {"letters": 1, "bytes": counted})  # and holds the row: see LOCK
        return True, self._prune(conn, now)

    def prune(self, now: float | None = None) -> list[Dropped]:
        """Drop what is past the bounds now (the age limit runs with no new letter too)."""
        with self.db.transaction() as conn:
            conn.execute(LOCK)
            return self._prune(conn, time.time() if now is None else now)

    def _prune(self, conn: Connection, now: float) -> list[Dropped]:
        rows = conn.execute(EXPIRE, {"cutoff": now - self.max_age}).all()
        dropped = [_dropped(r, "age") for r in sorted(rows, key=lambda r: float(r[4]))]
        self._release(conn, dropped)
        while self._used(conn) > self.max_bytes:
            oldest = conn.execute(OLDEST).first()
            if oldest is None:  # only SQLite's own pages left: a cap below what they take
                break
            gone = _dropped(oldest, "bytes")
            self._release(conn, [gone])
            dropped.append(gone)
        return dropped

    @staticmethod
    def _release(conn: Connection, dropped: list[Dropped]) -> None:
        if dropped:
            conn.execute(HOLD, {"letters": -len(dropped), "bytes": -sum(d.bytes for d in dropped)})

    def _used(self, conn: Connection) -> int:
        if self.place.shared:
            return int(conn.execute(HELD).one()[1])
        return int(conn.execute(USED_PAGES).scalar_one())

    def used_bytes(self) -> int:
        """What the byte cap bounds now: the file's used pages (its free pages are reused
        first, so it grows past this only by what one insert adds before it is pruned), or
        on PostgreSQL the bytes the letters hold."""
        with self.db.transaction() as conn:
            return self._used(conn)

    def held(self) -> tuple[int, int]:
        """(letters, bytes) held now."""
        with self.db.transaction() as conn:
            row = conn.execute(HELD).first()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def find(
        self, service: str | None = None, limit: int = 100, unreplayed: bool = False
    ) -> tuple[list[Letter], int]:
        """The newest letters (of one service), at most ``limit``, and how many match."""
        where = []
        if service is not None:
            where.append("service = :service")
        if unreplayed:
            where.append("replays = 0")
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        args = {"service": service, "limit": limit}
        with self.db.transaction() as conn:
            total = int(
                conn.execute(text(f"SELECT count(*) FROM letters {cond}"), args).scalar_one()
            )
            rows = conn.execute(
                text(
                    f"SELECT {COLUMNS} FROM letters {cond} "
                    "ORDER BY published DESC, seq DESC LIMIT :limit"
                ),
                args,
            ).all()
        return [_letter(r) for r in rows], total

    def get(self, letter_id: str) -> Letter | None:
        with self.db.transaction() as conn:
            row = conn.execute(GET, {"id": letter_id}).first()
        return None if row is None else _letter(row)

    def replayed(self, letter_id: str, when: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(REPLAYED, {"id": letter_id, "when": when})


def _bounded_wal(dbapi: Any, _record: Any) -> None:
    dbapi.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
    dbapi.execute(f"PRAGMA journal_size_limit={WAL_BYTES}")


def _letter(row: Sequence[Any]) -> Letter:
    return Letter(
        str(row[0]),
        str(row[1]),
        str(row[2]),
        str(row[3]),
        int(row[4]),
        int(row[5]),
        str(row[6]),
        bytes(row[7]),
        int(row[8]),
        None if row[9] is None else str(row[9]),
    )
