"""Every store Dovecote keeps: the embedded SQLite default, or one shared PostgreSQL.

A store is a ``Store`` subclass with a ``name`` (its schema on PostgreSQL) and a folder of
Alembic revisions; its queries are SQLAlchemy Core (``sqlalchemy.text`` or expressions),
run in ``self.db.transaction()``. ``Store.at(settings, ...)`` finds its place from the
environment (``DATABASE_URL``, else its file); ``open()`` connects and migrates.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from dovecote.config import Settings
from dovecote.errors import StoreUnavailable
from dovecote.store.places import Place, place

if TYPE_CHECKING:
    from dovecote.store.database import Database

# SQLAlchemy (and Alembic) load when a store opens, not with the runtime: a worker that
# keeps nothing never imports them (~0.12 s of CPU at each start).
__all__ = ["Place", "Store", "StoreUnavailable", "place"]


class Store:
    """A store in its place: ``open()`` before use, ``close()`` after."""

    # Its schema on a shared PostgreSQL: lower case, digits, underscores. A class's, or set
    # per instance by a store kept once per service (``dovecote.store.names``).
    name: str
    migrations: ClassVar[Path]  # the folder of its Alembic revisions

    def __init__(self, where: Place) -> None:
        self.place = where
        self._db: Database | None = None

    @classmethod
    def at(cls, settings: Settings, file_variable: str | None, default_file: Path) -> Self:
        """Where the environment puts it: see ``dovecote.store.database.place``."""
        return cls(place(settings, cls.name, file_variable, default_file))

    def open(self) -> Self:
        from dovecote.store.database import Database
        from dovecote.store.migrations import upgrade

        db = Database(self.place, self.name)
        try:
            upgrade(db, self.migrations)
        except BaseException:
            db.close()
            raise
        self._db = db
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> Database:
        assert self._db is not None, f"{type(self).__name__}.open() first"
        return self._db
