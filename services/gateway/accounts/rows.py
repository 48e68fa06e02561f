"""What the accounts store's parts share: their tables in the store's one place, a secret
kept as its digest, and times written as text that sorts (RFC 3339, UTC, to the second)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, TextClause, bindparam


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[Connection]: ...


class Tables:
    """A part of the accounts store (sign-ins, invitations, attempts): its own tables, made
    by the store's migrations, each call in the store's transaction (``people.transaction``:
    the one around it, else one of its own)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def transaction(self) -> AbstractContextManager[Connection]:
        return self.store.transaction()


def digest(secret: str) -> bytes:
    """What is kept of a random secret (a token's, a sign-in's, an invitation's): 32 random
    bytes need no slow hash, only one that cannot be turned back."""
    return hashlib.sha256(secret.encode()).digest()


def stamp(when: datetime | None = None) -> str:
    """``2026-12-07T04:44:00Z``: sorts as it reads."""
    return (when or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")


def ids_among(
    conn: Connection, query: TextClause, ids: Iterable[str], chunk: int = 500, **params: Any
) -> set[str]:
    """The ids ``query`` returns for ``ids``, asked in chunks (SQLite takes at most 999
    parameters a statement). ``query`` selects one id column with ``IN :ids``."""
    statement = query.bindparams(bindparam("ids", expanding=True))
    wanted, found = list(ids), set[str]()
    for at in range(0, len(wanted), chunk):
        rows = conn.execute(statement, {"ids": wanted[at : at + chunk], **params})
        found.update(str(r[0]) for r in rows)
    return found
