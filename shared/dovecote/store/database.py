"""Where a store keeps its rows, and the one way to reach them.

Two places, one set of queries (SQLAlchemy 2 Core speaks both dialects):

- **embedded (the default)**: one SQLite file per store under ``DOVECOTE_DATA_DIR`` (or the
  store's own variable, ``POINTS_DB`` say), WAL with ``synchronous=NORMAL``: a commit survives
  a crash of the process (kill -9), a power cut may lose the last ones. Writers of one
  machine share the file and wait for each other (``BEGIN IMMEDIATE``, ``busy_timeout``)
  rather than fail. ``make run`` needs no database server.
- **shared**: ``DATABASE_URL=postgresql://user:password@host:5432/dovecote`` puts every
  store of every service on every machine in that one database, each store in its own
  schema (``points``, ``accounts``, ...), so two stores' tables never meet and each store's
  migrations are its own (docs/deploying.md).

A database that cannot be reached raises ``StoreUnavailable``: nothing was stored, and the
caller says so (a worker keeps the message unacknowledged and tries again, the gateway
answers 503). Calls are synchronous and short (one small transaction); a worker makes them
on its event loop, as it always has with SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from dovecote.errors import StoreUnavailable
from dovecote.store.places import Place

BUSY_TIMEOUT_S = 5.0  # a SQLite writer waits this long for another before giving up
CONNECT_TIMEOUT_S = 3  # PostgreSQL: a server that does not answer is "unavailable" after this
# SQLite errors that pass (another writer, a full or missing disk), not mistakes in a query.
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o", "disk is full")


def engine_for(where: Place) -> Engine:
    """An engine with this project's settings for the dialect (see the module's docstring)."""
    if where.schema is None:
        return _sqlite_engine(where)
    return create_engine(
        where.url,
        pool_size=4,
        max_overflow=4,
        pool_timeout=CONNECT_TIMEOUT_S,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            # Unqualified names are the store's own tables: the same queries on both places.
            "options": f"-c search_path={where.schema}",
            "application_name": "dovecote",
        },
    )


def _sqlite_engine(where: Place) -> Engine:
    path = make_url(where.url).database
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Pooled: the pragmas below run once per connection, not once per transaction.
    engine = create_engine(where.url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # transactions are begun below, not by the driver
        dbapi.execute("PRAGMA journal_mode=WAL")
        dbapi.execute("PRAGMA synchronous=NORMAL")
        dbapi.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # IMMEDIATE: take the write lock at the start, so two writers queue (busy_timeout)
        # instead of one failing when its read turns into a write.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def unavailable(error: BaseException, where: Place) -> bool:
    """Is this an error of reaching the database (retry later), not of the query?"""
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if where.schema is None:
        text = str(error.orig).lower()
        return isinstance(error, sa_exc.OperationalError) and any(
            part in text for part in _SQLITE_TRANSIENT
        )
    return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)


class Database:
    """One store's engine: ``transaction()`` for everything, reads included."""

    def __init__(self, where: Place, store: str) -> None:
        self.place = where
        self.store = store
        self.engine = engine_for(where)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: committed when the block ends, rolled back if it raises. A
        database out of reach raises ``StoreUnavailable`` (nothing was stored)."""
        with self.unavailable_as_error(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def unavailable_as_error(self) -> Iterator[None]:
        """Errors of reaching the database, as ``StoreUnavailable``; others unchanged."""
        try:
            yield
        except (sa_exc.DBAPIError, sa_exc.TimeoutError, sa_exc.DisconnectionError) as exc:
            if unavailable(exc, self.place):
                raise StoreUnavailable(
                    f"the {self.store} store is unavailable ({self.place.shown}): "
                    f"{_first_line(exc)}"
                ) from exc
            raise

    def close(self) -> None:
        self.engine.dispose()


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
