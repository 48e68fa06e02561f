"""The tally's SQLite ledger, shared by its workers and read by the tests.

Kept apart from the service module so that a test can read the ledger without importing
the service, which would register its test topic in the test process's registry.
"""

from __future__ import annotations

import sqlite3

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tally (id TEXT PRIMARY KEY, worker TEXT, pid INTEGER, runs INTEGER)"
)


def open_ledger(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(SCHEMA)
    return db
