"""The dead-letter store's bounds (``services/deadletters/store.py``), without a broker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.deadletters.store import Letter, Store, row_bytes

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


def ids(store: Store) -> list[str]:
    found, _ = store.find(limit=1000)
    return sorted(x.id for x in found)


def file_bytes(path: Path) -> int:
    return path.stat().st_size


def test_past_the_byte_cap_the_oldest_go_first_each_one_reported(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    store = Store(path, CAP, DAY).open()
    dropped = []
    for n in range(30):
        kept, gone = store.keep(letter(n), now=1000.0 + n)
        assert kept
        dropped += gone
        assert store.used_bytes() <= CAP  # the file's own measure, after each letter
    held, held_bytes = store.held()
    assert held_bytes == held * row_bytes(letter(0)) and held >= 5
    assert [d.id for d in dropped] == [letter(n).id for n in range(30 - held)]
    assert {d.why for d in dropped} == {"bytes"}
    assert ids(store) == [letter(n).id for n in range(30 - held, 30)]
    assert store.keep(letter(29), now=2000.0) == (False, [])  # a copy: nothing changes
    store.close()
    again = Store(path, CAP, DAY).open()  # counted again from the rows
    assert again.held() == (held, held_bytes)
    again.close()


def test_the_file_stays_within_one_letter_of_the_cap_whatever_the_letters(
    tmp_path: Path,
) -> None:
    """Issue 21: a flood left a 74 MB store under a 64 MiB cap (each row was estimated; SQLite
    keeps ids twice, in indexes, on part-filled pages). The cap is now the file's own pages:
    small letters, large ones, a mix; the file never passes the cap by more than one letter
    (and a few pages of its indexes)."""
    cap, page = 1024**2, 4096
    for shape, sizes in {
        "small": [300] * 8000,
        "large": [60_000] * 60,
        "mixed": [300, 9_000, 1_200, 45_000, 700] * 400,
    }.items():
        path = tmp_path / f"{shape}.sqlite3"
        store = Store(path, cap, DAY).open()
        for n, size in enumerate(sizes):
            store.keep(letter(n, size=size), now=1000.0 + n)
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the pages into the file
        largest = max(sizes)
        assert file_bytes(path) <= cap + largest + 8 * page, shape
        assert store.used_bytes() <= cap, shape
        # and it is full, not emptied: the newest letters fill most of it
        assert store.held()[1] >= cap * 0.5, (shape, store.held())
        store.close()


def test_letters_older_than_the_age_limit_are_dropped_even_with_no_new_letter(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "d.sqlite3", CAP, DAY).open()
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
    store = Store(path, 10 * CAP, DAY).open()
    assert store.held() == (1, row_bytes(letter(1)))
    got = store.get(letter(1).id)
    assert got is not None and got.letter == bytes(10000)
    assert store.prune() == []  # kept "now": the age limit runs from the upgrade
    store.close()
