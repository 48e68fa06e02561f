"""The one way Dovecote opens a SQLite file it keeps state in (ledger, dead letters, outbox).

WAL with ``synchronous=NORMAL``: a commit survives a crash of the process (kill -9), though a
power cut may lose the last ones; writers of a pool share the file and wait for each other
(``busy_timeout``) rather than fail. Autocommit (``isolation_level=None``): callers open
their transactions explicitly where they need several statements as one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

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


def ids_among(
    db: sqlite3.Connection, query: str, ids: Iterable[str], *extra: Any, chunk: int = 500
) -> set[str]:
    """The ids ``query`` returns for ``ids``, asked in chunks (a statement takes at most
    999 parameters). ``query`` selects one id column and ends ``IN ({})``, followed by any
    conditions whose parameters are ``extra``: ``"SELECT id FROM t WHERE id IN ({})"``."""
    wanted, found = list(ids), set[str]()
    for at in range(0, len(wanted), chunk):
        part = wanted[at : at + chunk]
        statement = query.format(",".join("?" * len(part)))
        found.update(str(r[0]) for r in db.execute(statement, [*part, *extra]))
    return found


class SqliteFile:
    """A store kept in one SQLite file: ``open()`` before use, ``close()`` after.
    Subclasses name their tables in ``schema``."""

    schema: str = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def open(self) -> Self:
        self._db = open_db(self.path, self.schema)
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, f"{type(self).__name__}.open() first"
        return self._db
