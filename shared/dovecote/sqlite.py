"""How Dovecote opens a SQLite file that stays local to one machine: a worker's outbox.

The stores (ledger, inboxes, dead letters, records) are ``dovecote.store``: SQLite or a
shared PostgreSQL. An outbox is a buffer for the broker, not shared state, so it stays a
file of its own, opened here.

WAL with ``synchronous=NORMAL``: a commit survives a crash of the process (kill -9), though a
power cut may lose the last ones; writers share the file and wait for each other
(``busy_timeout``) rather than fail. Autocommit (``isolation_level=None``): callers open
their transactions explicitly where they need several statements as one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

BUSY_TIMEOUT_MS = 5000


def open_db(path: Path, schema: str) -> sqlite3.Connection:
    """Open (or create) the file and its tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.executescript(schema)
    return db
