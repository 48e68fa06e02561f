"""A service's own durable record: what it did, keyed on the activity that caused it.

The broker delivers at least once, and the runtime remembers the ids it handled only in
memory: after a restart (or on another worker of the pool) a redelivered activity is new to
it. A service whose effects must happen once (a badge, a count, a row) records each under its
cause, and acts only when the record is new:

    if not self.record.once(image.id, "upload", who=person.id):
        return  # counted already: a redelivery, a restart, a replay

``Service.keeps_record = True`` gives a service one, ``self.record``: a SQLite file under
``DOVECOTE_DATA_DIR`` (``<service>.record.sqlite3``) that the worker opens before ``setup()``
and closes after the last handler, shared by the workers of a pool on one machine.
Whatever the service shows as retained state is then made from the record, at start-up and
in ``republish_state()``: the record is the truth, the retained message a copy of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from dovecote.config import Settings
from dovecote.sqlite import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS record (
    cause TEXT NOT NULL,              -- the id of the activity that caused it
    kind  TEXT NOT NULL,              -- what it was: "upload", "badge", ...
    who   TEXT NOT NULL DEFAULT '',   -- whom it concerns ('' for no one in particular)
    data  TEXT,                       -- anything else, as JSON
    at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (cause, kind, who)
);
CREATE INDEX IF NOT EXISTS record_kind_who ON record (kind, who);
"""


class Record(SqliteFile):
    """Effects keyed on their cause; ``open()`` before use (the worker does)."""

    schema = SCHEMA

    @classmethod
    def for_service(cls, settings: Settings, service: str) -> Record:
        return cls(Path(settings.data_dir) / f"{service}.record.sqlite3")

    def once(
        self, cause: str, kind: str, who: str = "", data: Mapping[str, Any] | None = None
    ) -> bool:
        """Record that ``cause`` did ``kind`` (to ``who``): True the first time, False when it
        is recorded already (do nothing then)."""
        blob = orjson.dumps(dict(data)).decode() if data is not None else None
        inserted = self.db.execute(
            "INSERT INTO record (cause, kind, who, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (cause, kind, who) DO NOTHING",
            (cause, kind, who, blob),
        ).rowcount
        return bool(inserted)

    def count(self, kind: str, who: str | None = None) -> int:
        """How many ``kind`` were recorded (for ``who``)."""
        if who is None:
            row = self.db.execute("SELECT COUNT(*) FROM record WHERE kind = ?", (kind,))
        else:
            row = self.db.execute(
                "SELECT COUNT(*) FROM record WHERE kind = ? AND who = ?", (kind, who)
            )
        return int(row.fetchone()[0])

    def counts(self, kind: str) -> dict[str, int]:
        """``kind`` recorded, per ``who``: what a leaderboard or a card is made from."""
        rows = self.db.execute(
            "SELECT who, COUNT(*) FROM record WHERE kind = ? GROUP BY who ORDER BY who", (kind,)
        )
        return {str(who): int(n) for who, n in rows}

    def latest(self, kind: str, who: str | None = None) -> dict[str, Any] | None:
        """The newest ``kind`` (for ``who``): cause, who, data and when, or None."""
        query = "SELECT cause, who, data, at FROM record WHERE kind = ?"
        params: tuple[str, ...] = (kind,)
        if who is not None:
            query, params = query + " AND who = ?", (kind, who)
        row = self.db.execute(query + " ORDER BY at DESC, rowid DESC LIMIT 1", params).fetchone()
        if row is None:
            return None
        cause, whom, data, at = row
        return {"cause": cause, "who": whom, "data": orjson.loads(data) if data else None, "at": at}
