"""What the accounts store's parts share: their tables in the store's one file, a secret
kept as its digest, and times written as text that sorts (RFC 3339, UTC, to the second)."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime
from typing import Protocol


class Store(Protocol):
    @property
    def db(self) -> sqlite3.Connection: ...


class Tables:
    """A part of the accounts store (sign-ins, invitations, attempts): its own tables, in
    the store's file, made by ``install`` when the store opens."""

    schema = ""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def db(self) -> sqlite3.Connection:
        return self.store.db

    def install(self) -> None:
        self.db.executescript(self.schema)


def digest(secret: str) -> bytes:
    """What is kept of a random secret (a token's, a sign-in's, an invitation's): 32 random
    bytes need no slow hash, only one that cannot be turned back."""
    return hashlib.sha256(secret.encode()).digest()


def stamp(when: datetime | None = None) -> str:
    """``2026-12-07T04:44:00Z``: sorts as it reads."""
    return (when or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
