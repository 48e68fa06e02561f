"""A service's own durable record: what it did, keyed on the activity that caused it.

The broker delivers at least once, and the runtime remembers the ids it handled only in
memory: after a restart (or on another worker of the pool) a redelivered activity is new to
it. A service whose effects must happen once (a badge, a count, a row) records each under its
cause, and acts only when the record is new:

    if not await self.record.add(image.id, "upload", who=person.id):
        return  # counted already: a redelivery, a restart, a replay

``Service.keeps_record = True`` gives a service one, ``self.record``, that the worker opens
before ``setup()`` and closes after the last handler: a SQLite file under
``DOVECOTE_DATA_DIR`` (``<service>.record.sqlite3``) shared by the workers of a pool on one
machine, or with ``DATABASE_URL`` the service's own schema there (``record_<service>``,
``dovecote.store.names``), shared by its workers on every machine. ``add`` commits with the
other writes of the same turn of the event loop (one commit for a burst of messages);
``once`` is the same in a transaction of its own. Whatever the service shows as retained
state is then made from the record, at start-up and in ``republish_state()``: the record is
the truth, the retained message a copy of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, text

from dovecote import activity as act
from dovecote.config import Settings
from dovecote.store import Place, Store, place
from dovecote.store.coalesce import Coalescer
from dovecote.store.names import schema_for

INSERT = text(
    "INSERT INTO record (cause, kind, who, data, at) VALUES (:cause, :kind, :who, :data, :at) "
    "ON CONFLICT (cause, kind, who) DO NOTHING"
)
LATEST = "SELECT cause, who, data, at FROM record WHERE kind = :kind"


class Record(Store):
    """Effects keyed on their cause; ``open()`` before use (the worker does)."""

    name = "record"
    migrations = Path(__file__).with_name("migrations") / "record"

    def __init__(self, where: Place, name: str = "record") -> None:
        super().__init__(where)
        self.name = name

    @classmethod
    def for_service(cls, settings: Settings, service: str) -> Record:
        schema = schema_for("record", service)
        default = Path(settings.data_dir) / f"{service}.record.sqlite3"
        return cls(place(settings, schema, None, default), schema)

    def open(self) -> Record:
        super().open()
        self._group = Coalescer(self.db)
        return self

    async def add(
        self, cause: str, kind: str, who: str = "", data: Mapping[str, Any] | None = None
    ) -> bool:
        """``once``, committed with the other writes of this turn of the event loop."""
        row = _row(cause, kind, who, data)
        return await self._group.run(lambda conn: _insert(conn, row))

    def once(
        self, cause: str, kind: str, who: str = "", data: Mapping[str, Any] | None = None
    ) -> bool:
        """Record that ``cause`` did ``kind`` (to ``who``): True the first time, False when it
        is recorded already (do nothing then)."""
        with self.db.transaction() as conn:
            return _insert(conn, _row(cause, kind, who, data))

    def count(self, kind: str, who: str | None = None) -> int:
        """How many ``kind`` were recorded (for ``who``)."""
        query = "SELECT COUNT(*) FROM record WHERE kind = :kind"
        if who is not None:
            query += " AND who = :who"
        with self.db.transaction() as conn:
            return int(conn.execute(text(query), {"kind": kind, "who": who}).scalar_one())

    def counts(self, kind: str) -> dict[str, int]:
        """``kind`` recorded, per ``who``: what a leaderboard or a card is made from."""
        query = text(
            "SELECT who, COUNT(*) FROM record WHERE kind = :kind GROUP BY who ORDER BY who"
        )
        with self.db.transaction() as conn:
            rows = conn.execute(query, {"kind": kind}).all()
        return {str(who): int(n) for who, n in rows}

    def latest(self, kind: str, who: str | None = None) -> dict[str, Any] | None:
        """The newest ``kind`` (for ``who``): cause, who, data and when, or None."""
        query = LATEST + (" AND who = :who" if who is not None else "")
        with self.db.transaction() as conn:
            row = conn.execute(
                text(query + " ORDER BY at DESC, id DESC LIMIT 1"), {"kind": kind, "who": who}
            ).first()
        if row is None:
            return None
        cause, whom, data, at = row
        return {"cause": cause, "who": whom, "data": orjson.loads(data) if data else None, "at": at}


def _row(cause: str, kind: str, who: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
    blob = orjson.dumps(dict(data)).decode() if data is not None else None
    return {"cause": cause, "kind": kind, "who": who, "data": blob, "at": act.now()}


def _insert(conn: Connection, row: dict[str, Any]) -> bool:
    return bool(conn.execute(INSERT, row).rowcount)
