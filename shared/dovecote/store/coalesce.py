"""Group commit: the writes asked for in one turn of the event loop, in one transaction.

A worker reads many messages per socket wake-up and starts their handlers one after
another; each handler's write awaits ``Coalescer.run``, and the whole turn's writes commit
together once the loop is free. On PostgreSQL a commit waits for the disk (~0.6 ms here):
one commit for a turn's twenty awards, not twenty. Each handler still gets its own result
(or error) and acknowledges its message only after the commit that holds its write.

A store whose writes differ much in size bounds a batch by their weight instead (the dead
letters: bytes, so one commit never fills SQLite's write-ahead log with a flood's letters).

A write that fails on its own (a constraint, a bug) must not fail the others: when a batch
fails for any reason but the database being unavailable, each write runs again alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Connection

from dovecote.errors import StoreUnavailable
from dovecote.store.database import Database

T = TypeVar("T")
Item = TypeVar("Item")
Result = TypeVar("Result")
Work = Callable[[Connection], Any]
MAX_BATCH = 500  # writes in one transaction at most: a long one holds SQLite's lock


class Batcher(Generic[Item, Result]):
    """The items asked for in one turn of the event loop, stored by one function,
    ``write(conn, items)``, in one transaction, one result per item in order. A store
    writing items of one kind writes them with a statement or two (a multi-row insert:
    on PostgreSQL each statement is a round trip); ``Coalescer`` runs writes of any kind.
    ``limit`` bounds a transaction by the items' weight (one item always goes)."""

    def __init__(
        self,
        db: Database,
        write: Callable[[Connection, list[Item]], list[Result]],
        limit: int = MAX_BATCH,
    ) -> None:
        self.db = db
        self.write = write
        self.limit = limit
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._weights: list[int] = []
        self._scheduled = False
        self.commits = 0  # transactions committed (for tests and benchmarks)

    async def add(self, item: Item, weight: int = 1) -> Result:
        """Store ``item`` in the next group transaction; its result once committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, done))
        self._weights.append(weight)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await done

    def _flush(self) -> None:
        self._scheduled = False
        while self._pending:
            size, weight = 1, self._weights[0]
            while size < len(self._pending) and weight + self._weights[size] <= self.limit:
                weight += self._weights[size]
                size += 1
            batch, self._pending = self._pending[:size], self._pending[size:]
            self._weights = self._weights[size:]
            self._commit(batch)

    def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        live = [(item, done) for item, done in batch if not done.cancelled()]
        if not live:
            return
        try:
            with self.db.transaction() as conn:
                results = self.write(conn, [item for item, _ in live])
        except StoreUnavailable as exc:
            for _, done in live:
                _settle(done, error=exc)
            return
        except Exception as exc:
            if len(live) == 1:
                _settle(live[0][1], error=exc)
            else:  # one bad item: the others go on, each alone
                for one in live:
                    self._commit([one])
            return
        self.commits += 1
        for (_, done), result in zip(live, results, strict=True):
            _settle(done, result=result)


def _run_each(conn: Connection, works: list[Work]) -> list[Any]:
    return [work(conn) for work in works]


class Coalescer(Batcher[Work, Any]):
    """Writes of any kind (``work(conn)``), the turn's in one transaction."""

    def __init__(self, db: Database, limit: int = MAX_BATCH) -> None:
        super().__init__(db, _run_each, limit)

    async def run(self, work: Callable[[Connection], T], weight: int = 1) -> T:
        """``work(conn)`` in the next group transaction; its result once committed."""
        return cast(T, await self.add(work, weight))


def _settle(
    done: asyncio.Future[Any], result: Any = None, error: BaseException | None = None
) -> None:
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
