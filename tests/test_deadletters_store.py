"""The dead-letter store's bounds (``services/deadletters/store.py``), without a broker: on
SQLite and PostgreSQL (``databases``), and a store made by 8d385c8 adopted."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from dovecote.store import Place
from dovecote_testing.plugin import Databases
from services.deadletters.store import DeadLetterStore, Letter, row_bytes

CAP = 100_000
DAY = 86400.0


def letter(n: int, size: int = 10_000, service: str = "points") -> Letter:
    return Letter(
        id=f"urn:uuid:{n:08d}",
        service=service,
        topic="dovecote/services/query",
        reason="malformed JSON",
        attempts=0,
        size=size,
        published="2026-11-29T08:00:00Z",
        letter=b"x" * size,
        replays=0,
        last_replayed=None,
    )


def ids(store: DeadLetterStore) -> list[str]:
    found, _ = store.find(limit=1000)
    return sorted(x.id for x in found)


def file_bytes(path: Path) -> int:
    return path.stat().st_size


def test_past_the_byte_cap_the_oldest_go_first_each_one_reported(databases: Databases) -> None:
    where = databases.place("deadletters")
    store = DeadLetterStore(where, CAP, DAY).open()
    dropped = []
    for n in range(30):
        kept, gone = store.keep(letter(n), now=1000.0 + n)
        assert kept
        dropped += gone
        assert store.used_bytes() <= CAP  # the file's own measure (or what is held), each time
    held, held_bytes = store.held()
    assert held_bytes == held * row_bytes(letter(0)) and held >= 5
    assert [d.id for d in dropped] == [letter(n).id for n in range(30 - held)]
    assert {d.why for d in dropped} == {"bytes"}
    assert ids(store) == [letter(n).id for n in range(30 - held, 30)]
    assert store.keep(letter(29), now=2000.0) == (False, [])  # a copy: nothing changes
    store.close()
    again = DeadLetterStore(where, CAP, DAY).open()  # counted again from the rows
    assert again.held() == (held, held_bytes)
    again.close()


async def test_the_file_stays_within_one_letter_of_the_cap_whatever_the_letters(
    tmp_path: Path,
) -> None:
    """Issue 21: a flood left a 74 MB store under a 64 MiB cap (each row was estimated; SQLite
    keeps ids twice, in indexes, on part-filled pages). The cap is now the file's own pages:
    small letters, large ones, a mix; the file never passes the cap by more than one letter
    (and a few pages of its indexes). The letters arrive as a flood does, many in a read of
    the socket, committed together (``add``), each pruned as it comes."""
    cap, page = 1024**2, 4096
    for shape, sizes in {
        "small": [300] * 6000,  # 2 MB of them
        "large": [60_000] * 60,
        "mixed": [300, 9_000, 1_200, 45_000, 700] * 200,
    }.items():
        path = tmp_path / f"{shape}.sqlite3"
        store = DeadLetterStore(Place.file(path), cap, DAY).open()
        for at in range(0, len(sizes), 100):
            burst = enumerate(sizes[at : at + 100], start=at)
            await asyncio.gather(*(store.add(letter(n, size=size)) for n, size in burst))
        checkpoint = sqlite3.connect(path)  # the pages into the file
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        largest = max(sizes)
        assert file_bytes(path) <= cap + largest + 8 * page, shape
        assert store.used_bytes() <= cap, shape
        # and it is full, not emptied: the newest letters fill most of it
        assert store.held()[1] >= cap * 0.5, (shape, store.held())
        store.close()


async def test_a_flood_commits_a_bounded_size_at_a_time(databases: Databases) -> None:
    """Letters of one read commit together, but at most WAL_BYTES / 2 of them in one
    transaction (SQLite's log would otherwise hold a whole flood at once)."""
    store = DeadLetterStore(databases.place("deadletters"), 100 * CAP, DAY).open()
    try:
        flood = [letter(n, size=100_000) for n in range(20)]  # 5 fit in 512 KiB, not 6
        kept = await asyncio.gather(*(store.add(x) for x in flood))
        assert kept == [(True, [])] * 20 and store._group.commits == 4
        assert store.held() == (20, sum(row_bytes(x) for x in flood))
    finally:
        store.close()


def test_letters_older_than_the_age_limit_are_dropped_even_with_no_new_letter(
    databases: Databases,
) -> None:
    store = DeadLetterStore(databases.place("deadletters"), CAP, DAY).open()
    store.keep(letter(1), now=0.0)
    store.keep(letter(2), now=10.0)
    store.keep(letter(3), now=DAY - 1)
    gone = store.prune(now=DAY + 20)
    assert [(d.id, d.why, d.kept_at) for d in gone] == [
        (letter(1).id, "age", 0.0),
        (letter(2).id, "age", 10.0),
    ]
    assert ids(store) == [letter(3).id]
    _, gone = store.keep(letter(4), now=2 * DAY)
    assert [d.id for d in gone] == [letter(3).id]
    assert store.held()[0] == 1
    store.close()


def test_a_store_made_before_the_bounds_is_upgraded_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE letters (
            id TEXT PRIMARY KEY, service TEXT NOT NULL, topic TEXT NOT NULL,
            reason TEXT NOT NULL, attempts INTEGER NOT NULL, size INTEGER NOT NULL,
            published TEXT NOT NULL, letter BLOB NOT NULL,
            replays INTEGER NOT NULL DEFAULT 0, last_replayed TEXT
        );
        INSERT INTO letters (id, service, topic, reason, attempts, size, published, letter)
        VALUES ('urn:uuid:00000001', 'points', 'dovecote/services/query', 'malformed JSON',
                0, 10000, '2026-11-29T08:00:00Z', zeroblob(10000));
        """
    )
    old.commit()
    old.close()
    store = DeadLetterStore(Place.file(path), 10 * CAP, DAY).open()
    assert store.held() == (1, row_bytes(letter(1)))
    got = store.get(letter(1).id)
    assert got is not None and got.letter == bytes(10000)
    assert store.prune() == []  # kept "now": the age limit runs from the upgrade
    store.close()


# The store as 8d385c8 made it (services/deadletters/store.py: SCHEMA, then BOUNDS), its held
# count kept by triggers.
MADE_BY_8D385C8 = """
CREATE TABLE IF NOT EXISTS letters (
    id            TEXT PRIMARY KEY,
    service       TEXT NOT NULL,
    topic         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    published     TEXT NOT NULL,
    letter        BLOB NOT NULL,
    replays       INTEGER NOT NULL DEFAULT 0,
    last_replayed TEXT,
    kept_at       REAL NOT NULL DEFAULT 0,
    bytes         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS letters_service ON letters (service, published);
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
INSERT OR REPLACE INTO held (one, letters, bytes) VALUES (1, 0, 0);
"""


def test_a_store_made_by_8d385c8_is_adopted_in_order_nothing_lost(tmp_path: Path) -> None:
    path = tmp_path / "deadletters.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MADE_BY_8D385C8)
    # Ids not in the order they were kept: the oldest is the first kept, not the least id.
    order = [3, 1, 2]
    for n in order:
        x = letter(n, size=1000, service="builder" if n == 2 else "points")
        old.execute(
            "INSERT INTO letters (id, service, topic, reason, attempts, size, published, "
            "letter, replays, last_replayed, kept_at, bytes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                x.id,
                x.service,
                x.topic,
                x.reason,
                x.attempts,
                x.size,
                x.published,
                x.letter,
                1 if n == 1 else 0,
                "2026-11-30T08:00:00Z" if n == 1 else None,
                100.0 + n,
                row_bytes(x),
            ),
        )
    old.commit()
    old.close()
    store = DeadLetterStore(Place.file(path), 10 * CAP, DAY).open()
    held = sum(row_bytes(x) for x in store.find()[0])
    assert store.held() == (3, held) and held > 3000  # counted once, not twice
    got = store.get(letter(1).id)
    assert got is not None and got.letter == b"x" * 1000
    assert (got.replays, got.last_replayed) == (1, "2026-11-30T08:00:00Z")
    assert [x.id for x in store.find("builder")[0]] == [letter(2).id]
    assert [x.id for x in store.find(unreplayed=True)[0]] == [letter(2).id, letter(3).id]
    assert store.prune(now=100.5 + DAY) == []  # each one's kept_at kept: none a day old
    assert [d.id for d in store.prune(now=101.5 + DAY)] == [letter(1).id]
    # Past the cap, the oldest kept go first, and the count moves with them.
    store.max_bytes = 0
    _, gone = store.keep(letter(4, size=1000), now=200.0)
    assert [d.id for d in gone][:2] == [letter(n).id for n in order if n != 1]
    assert store.held()[0] == 0
    store.close()
