"""The dead-letter store: one SQLite row per letter, the letter's activity id its identity.

A letter redelivered by the broker (this service was killed before its ack) inserts
nothing. The whole letter is kept as published, so a replay sends back exactly what the
failing service parked. WAL, ``synchronous=NORMAL``: durable against a crash of this process.

Bounded: at most ``max_bytes`` on disk and no letter older than ``max_age`` seconds since it
was kept here (this machine's clock, not the parker's). Past either, the oldest kept go
first; every one dropped is returned to the caller, which counts and logs it.

The byte cap is the file's own measure, the pages its rows and indexes use (SQLite's
``page_count`` less its free pages, which it reuses before the file grows), not an estimate
of each row: so the file stays within one letter (and a few pages) of the cap, whatever the
letters' shapes, and beside it only the write-ahead log (checkpointed every 256 pages and
cut back to 1 MiB). What the letters themselves hold is counted by triggers in the same
file, so a pool of workers sharing it agrees on it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

from dovecote.sqlite import SqliteFile

WAL_PAGES = 256  # SQLite's default is 1000 (4 MiB of 4 KiB pages)
WAL_BYTES = 1024**2
ROW_OVERHEAD = 64  # bytes a row costs beyond its fields' (SQLite's record and index)

SCHEMA = """
CREATE TABLE IF NOT EXISTS letters (
    id            TEXT PRIMARY KEY,   -- the Flag's activity id
    service       TEXT NOT NULL,      -- who parked it
    topic         TEXT NOT NULL,      -- the original topic
    reason        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    published     TEXT NOT NULL,      -- when it was parked
    letter        BLOB NOT NULL,      -- the Flag, as published
    replays       INTEGER NOT NULL DEFAULT 0,
    last_replayed TEXT,
    kept_at       REAL NOT NULL DEFAULT 0,  -- when this store kept it (unix seconds)
    bytes         INTEGER NOT NULL DEFAULT 0  -- what it counts for against the cap
);
CREATE INDEX IF NOT EXISTS letters_service ON letters (service, published);
"""

# After the columns a store made before the caps lacks are added (``_upgrade``).
BOUNDS = """
CREATE INDEX IF NOT EXISTS letters_kept_at ON letters (kept_at);
CREATE TABLE IF NOT EXISTS held (
    one     INTEGER PRIMARY KEY CHECK (one = 1),
    letters INTEGER NOT NULL,
    bytes   INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS letters_held_in AFTER INSERT ON letters BEGIN
    UPDATE held SET letters = letters + 1, bytes = bytes + NEW.bytes;
END;
CREATE TRIGGER IF NOT EXISTS letters_held_out AFTER DELETE ON letters BEGIN
    UPDATE held SET letters = letters - 1, bytes = bytes - OLD.bytes;
END;
"""
COLUMNS = "id, service, topic, reason, attempts, size, published, letter, replays, last_replayed"


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


def _dropped(row: tuple[object, ...], why: Literal["bytes", "age"]) -> Dropped:
    id_, service, topic, size, kept_at = row
    return Dropped(str(id_), str(service), str(topic), int(str(size)), float(str(kept_at)), why)


def row_bytes(letter: Letter) -> int:
    """What one letter counts for against the byte cap."""
    fields = (letter.id, letter.service, letter.topic, letter.reason, letter.published)
    return len(letter.letter) + sum(len(f.encode()) for f in fields) + ROW_OVERHEAD


class Store(SqliteFile):
    schema = SCHEMA

    def __init__(self, path: Path, max_bytes: int, max_age: float) -> None:
        super().__init__(path)
        self.max_bytes = max_bytes
        self.max_age = max_age

    def open(self) -> Self:
        super().open()
        # A flood's inserts and drops pass through the write-ahead log: checkpointed every
        # WAL_PAGES and cut back to WAL_BYTES after, it adds ~1 MiB to the file, not 4.
        self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        self.db.execute(f"PRAGMA journal_size_limit={WAL_BYTES}")
        with self._transaction():
            self._upgrade()
        self.db.executescript(BOUNDS)  # each statement idempotent: no transaction needed
        with self._transaction():  # what is held, counted once from the rows themselves
            self.db.execute(
                "INSERT OR REPLACE INTO held (one, letters, bytes) "
                "SELECT 1, count(*), total(bytes) FROM letters"
            )
        return self

    def _upgrade(self) -> None:
        """A store made before the caps: its letters get their size and, as the time they
        were kept, now (their age limit runs from the upgrade)."""
        have = {str(r[1]) for r in self.db.execute("PRAGMA table_info(letters)")}
        if "kept_at" not in have:
            self.db.execute("ALTER TABLE letters ADD COLUMN kept_at REAL NOT NULL DEFAULT 0")
            self.db.execute("UPDATE letters SET kept_at = ?", (time.time(),))
        if "bytes" not in have:
            self.db.execute("ALTER TABLE letters ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0")
            self.db.execute(
                "UPDATE letters SET bytes = length(letter) + length(CAST(id AS BLOB)) "
                "+ length(CAST(service AS BLOB)) + length(CAST(topic AS BLOB)) "
                "+ length(CAST(reason AS BLOB)) + length(CAST(published AS BLOB)) + ?",
                (ROW_OVERHEAD,),
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def keep(self, letter: Letter, now: float | None = None) -> tuple[bool, list[Dropped]]:
        """Keep the letter (True if it is new), then drop what is past the bounds, oldest
        first (the new letter too, when it alone is over the cap)."""
        now = time.time() if now is None else now
        with self._transaction():
            new = self.db.execute(
                f"INSERT INTO letters ({COLUMNS}, kept_at, bytes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    letter.id,
                    letter.service,
                    letter.topic,
                    letter.reason,
                    letter.attempts,
                    letter.size,
                    letter.published,
                    letter.letter,
                    now,
                    row_bytes(letter),
                ),
            ).rowcount
            dropped = self._prune(now)
        return bool(new), dropped

    def prune(self, now: float | None = None) -> list[Dropped]:
        """Drop what is past the bounds now (the age limit runs with no new letter too)."""
        with self._transaction():
            return self._prune(time.time() if now is None else now)

    def _prune(self, now: float) -> list[Dropped]:
        returning = "RETURNING id, service, topic, bytes, kept_at"
        rows = self.db.execute(
            f"DELETE FROM letters WHERE kept_at < ? {returning}", (now - self.max_age,)
        ).fetchall()
        dropped = [_dropped(r, "age") for r in sorted(rows, key=lambda r: float(r[4]))]
        while self.used_bytes() > self.max_bytes:
            oldest = self.db.execute(
                f"DELETE FROM letters WHERE rowid = (SELECT min(rowid) FROM letters) {returning}"
            ).fetchone()
            if oldest is None:  # only SQLite's own pages left: a cap below what they take
                break
            dropped.append(_dropped(oldest, "bytes"))
        return dropped

    def used_bytes(self) -> int:
        """Bytes of the file its rows and indexes use now (its free pages are reused first,
        so the file grows past this only by what one insert adds before it is pruned)."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self.db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def held(self) -> tuple[int, int]:
        """(letters, bytes) held now."""
        row = self.db.execute("SELECT letters, bytes FROM held").fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def find(
        self, service: str | None = None, limit: int = 100, unreplayed: bool = False
    ) -> tuple[list[Letter], int]:
        """The newest letters (of one service), at most ``limit``, and how many match."""
        where, args = [], []
        if service is not None:
            where.append("service = ?")
            args.append(service)
        if unreplayed:
            where.append("replays = 0")
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        total = int(self.db.execute(f"SELECT count(*) FROM letters {cond}", args).fetchone()[0])
        rows = self.db.execute(
            f"SELECT {COLUMNS} FROM letters {cond} ORDER BY published DESC, rowid DESC LIMIT ?",
            [*args, limit],
        ).fetchall()
        return [self._letter(r) for r in rows], total

    def get(self, letter_id: str) -> Letter | None:
        row = self.db.execute(
            f"SELECT {COLUMNS} FROM letters WHERE id = ?", (letter_id,)
        ).fetchone()
        return None if row is None else self._letter(row)

    def replayed(self, letter_id: str, when: str) -> None:
        self.db.execute(
            "UPDATE letters SET replays = replays + 1, last_replayed = ? WHERE id = ?",
            (when, letter_id),
        )

    @staticmethod
    def _letter(row: tuple[object, ...]) -> Letter:
        return Letter(
            str(row[0]),
            str(row[1]),
            str(row[2]),
            str(row[3]),
            int(row[4]),  # type: ignore[call-overload]
            int(row[5]),  # type: ignore[call-overload]
            str(row[6]),
            bytes(row[7]),  # type: ignore[call-overload]
            int(row[8]),  # type: ignore[call-overload]
            None if row[9] is None else str(row[9]),
        )
