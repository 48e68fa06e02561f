"""The gateway's people: accounts, who follows whom, and personal API tokens, in SQLite.

The gateway owns the user directory (every service GETs a person or their followers from
it), so it owns the accounts behind it. One file (``ACCOUNTS_DB``) shared by every gateway
worker on the machine (WAL, ``dovecote.sqlite``).

Passwords, names and tokens pass the rules of ``credentials.py`` before they are kept; a
token's secret is kept as its SHA-256 only (32 random bytes: a slow hash adds nothing),
compared in constant time, and shown once, when it is made.
"""

from __future__ import annotations

import hmac
import secrets
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dovecote.sqlite import SqliteFile, ids_among
from services.gateway.accounts.credentials import (
    TOKEN_PREFIX,
    Person,
    Refused,
    Token,
    display_name,
    now,
    split_token,
    stale,
    valid_user_id,
)
from services.gateway.accounts.guesses import Guesses
from services.gateway.accounts.invites import Invites
from services.gateway.accounts.names import lookalike_key, reserved
from services.gateway.accounts.rows import digest
from services.gateway.accounts.signins import SignIns

SCHEMA = """
CREATE TABLE IF NOT EXISTS people (
    id        TEXT PRIMARY KEY,   -- the user id: a topic level (check_id), /users/<id>
    name      TEXT NOT NULL,      -- display name
    password  TEXT NOT NULL,      -- Argon2id hash (PHC string)
    created   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS follows (
    follower  TEXT NOT NULL REFERENCES people (id),
    followee  TEXT NOT NULL REFERENCES people (id),
    since     TEXT NOT NULL,
    PRIMARY KEY (follower, followee)
);
CREATE INDEX IF NOT EXISTS follows_followee ON follows (followee, follower);
CREATE TABLE IF NOT EXISTS tokens (
    id        TEXT PRIMARY KEY,   -- public part, in the token itself
    person    TEXT NOT NULL REFERENCES people (id),
    name      TEXT NOT NULL,      -- what its owner called it
    digest    BLOB NOT NULL,      -- SHA-256 of the secret part
    created   TEXT NOT NULL,
    last_used TEXT
);
CREATE INDEX IF NOT EXISTS tokens_person ON tokens (person, created);
"""
# Columns added after the first release, with their fill for rows that predate them: a
# file made by an older gateway is upgraded in place when it is opened (nothing recreated).
ADDED_COLUMNS = (
    ("people", "operator", "INTEGER NOT NULL DEFAULT 0"),  # made by `dovecote admin gateway`
    ("people", "id_key", "TEXT"),  # names.lookalike_key of the id and the display name
    ("people", "name_key", "TEXT"),
    ("tokens", "last_address", "TEXT"),  # where it was last used from
)
INDEXES = """
CREATE INDEX IF NOT EXISTS people_id_key ON people (id_key);
CREATE INDEX IF NOT EXISTS people_name_key ON people (name_key);
"""

# The built-in demo people (seeded when DEMO_PASSWORD is set): Ada and Grace follow each
# other, so two browsers show a notification within a minute of `make run`.
DEMO_PEOPLE: list[dict[str, Any]] = [
    {"id": "ada", "name": "Ada Lovelace", "follows": ["grace", "linus"]},
    {"id": "grace", "name": "Grace Hopper", "follows": ["ada"]},
    {"id": "linus", "name": "Linus Torvalds", "follows": ["ada", "grace"]},
]

TOKEN_NAME_MAX = 60
TOKENS_PER_PERSON = 20


class People(SqliteFile):
    schema = SCHEMA

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        # The store's other tables, each with its own module: who is signed in where,
        # invitations, and sign-in attempts per account.
        self.signins = SignIns(self)
        self.invites = Invites(self)
        self.guesses = Guesses(self)

    def open(self) -> People:
        super().open()
        self._upgrade()
        for part in (self.signins, self.invites, self.guesses):
            part.install()
        return self

    def _upgrade(self) -> None:
        """Bring a file made by an older gateway up to this schema, in place."""
        with self.transaction():
            for table, column, kind in ADDED_COLUMNS:
                have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            unkeyed = self.db.execute(
                "SELECT id, name FROM people WHERE id_key IS NULL OR name_key IS NULL"
            ).fetchall()
            for person_id, name in unkeyed:
                self.db.execute(
                    "UPDATE people SET id_key = ?, name_key = ? WHERE id = ?",
                    (lookalike_key(person_id), lookalike_key(name), person_id),
                )
        self.db.executescript(INDEXES)  # outside: executescript commits first

    # --- accounts --------------------------------------------------------------------------

    def get(self, person_id: str) -> Person | None:
        row = self.db.execute(
            "SELECT id, name, operator FROM people WHERE id = ?", (person_id,)
        ).fetchone()
        return Person(row[0], row[1], bool(row[2])) if row else None

    def password_hash(self, person_id: str) -> str | None:
        row = self.db.execute("SELECT password FROM people WHERE id = ?", (person_id,)).fetchone()
        return str(row[0]) if row else None

    def set_password(self, person_id: str, password_hash: str) -> bool:
        return bool(
            self.db.execute(
                "UPDATE people SET password = ? WHERE id = ?", (password_hash, person_id)
            ).rowcount
        )

    def vet(self, person_id: str, name: str) -> tuple[str, str]:
        """The id and display name a newcomer asked for, once they are free to take:
        ``Refused`` for a reserved id, a taken one, or an id or name that passes for
        another person's (``names.py``)."""
        person_id, name = valid_user_id(person_id), display_name(name)
        if reserved(person_id):
            raise Refused(f"the user name {person_id!r} is reserved: pick another")
        if self.get(person_id) is not None:
            raise Refused(f"the user name {person_id!r} is taken")
        for asked, what in ((person_id, "user name"), (name, "display name")):
            key = lookalike_key(asked)
            row = self.db.execute(
                "SELECT id, name FROM people WHERE id_key = ? OR name_key = ? LIMIT 1",
                (key, key),
            ).fetchone()
            if key and row is not None:
                raise Refused(
                    f"the {what} {asked!r} looks like {row[1]} (@{row[0]}): pick one that "
                    "cannot pass for another person"
                )
        return person_id, name

    def add(
        self, person_id: str, name: str, password_hash: str, *, operator: bool = False
    ) -> Person:
        """A new account; ``Refused`` if the id is taken (``vet`` checks the rest first)."""
        person = Person(valid_user_id(person_id), display_name(name), operator)
        try:
            self.db.execute(
                "INSERT INTO people (id, name, password, created, operator, id_key, name_key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    person.id,
                    person.name,
                    password_hash,
                    now(),
                    int(operator),
                    lookalike_key(person.id),
                    lookalike_key(person.name),
                ),
            )
        except sqlite3.IntegrityError:
            raise Refused(f"the user name {person.id!r} is taken") from None
        return person

    def set_operator(self, person_id: str, operator: bool) -> bool:
        """Make a person an operator, or no longer one; False if there is no such person."""
        return bool(
            self.db.execute(
                "UPDATE people SET operator = ? WHERE id = ?", (int(operator), person_id)
            ).rowcount
        )

    def operators(self) -> list[Person]:
        rows = self.db.execute(
            "SELECT id, name FROM people WHERE operator = 1 ORDER BY created, id"
        )
        return [Person(r[0], r[1], True) for r in rows]

    def all(self, limit: int = 200) -> list[Person]:
        rows = self.db.execute(
            "SELECT id, name, operator FROM people ORDER BY created, id LIMIT ?", (limit,)
        )
        return [Person(r[0], r[1], bool(r[2])) for r in rows]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM people").fetchone()[0])

    def seed(self, people: list[dict[str, Any]], password_hash: str) -> list[str]:
        """Create the people who have no account yet (with their follows) and give every
        one of them this password; the ids of those created. Follows are set only when a
        person is created: an unfollow survives a restart."""
        created = []
        with self.transaction():
            for p in people:
                person_id = valid_user_id(p["id"])
                if self.get(person_id) is None:
                    name = display_name(p["name"])
                    self.db.execute(
                        "INSERT INTO people (id, name, password, created, id_key, name_key) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            person_id,
                            name,
                            password_hash,
                            now(),
                            lookalike_key(person_id),
                            lookalike_key(name),
                        ),
                    )
                    created.append(person_id)
                else:
                    self.db.execute(
                        "UPDATE people SET password = ? WHERE id = ?", (password_hash, person_id)
                    )
            for p in people:
                if p["id"] in created:
                    for other in p.get("follows", []):
                        self._insert_follow(p["id"], other)
        return created

    # --- follows ---------------------------------------------------------------------------

    def follow(self, follower: str, followee: str) -> bool:
        """True if this is a new follow."""
        if follower == followee:
            raise Refused("you cannot follow yourself")
        return self._insert_follow(follower, followee)

    def unfollow(self, follower: str, followee: str) -> bool:
        """True if there was a follow to take back."""
        return bool(
            self.db.execute(
                "DELETE FROM follows WHERE follower = ? AND followee = ?", (follower, followee)
            ).rowcount
        )

    def follows(self, follower: str, followee: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM follows WHERE follower = ? AND followee = ?", (follower, followee)
        ).fetchone()
        return row is not None

    def followers(self, person_id: str) -> list[Person]:
        rows = self.db.execute(
            "SELECT p.id, p.name FROM follows f JOIN people p ON p.id = f.follower "
            "WHERE f.followee = ? ORDER BY f.since, p.id",
            (person_id,),
        )
        return [Person(r[0], r[1]) for r in rows]

    def following(self, person_id: str) -> list[Person]:
        rows = self.db.execute(
            "SELECT p.id, p.name FROM follows f JOIN people p ON p.id = f.followee "
            "WHERE f.follower = ? ORDER BY f.since, p.id",
            (person_id,),
        )
        return [Person(r[0], r[1]) for r in rows]

    def _insert_follow(self, follower: str, followee: str) -> bool:
        try:
            return bool(
                self.db.execute(
                    "INSERT INTO follows (follower, followee, since) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (follower, followee, now()),
                ).rowcount
            )
        except sqlite3.IntegrityError:  # foreign key (when enforced): no such person
            raise Refused(f"no such person {followee!r}") from None

    # --- tokens ----------------------------------------------------------------------------

    def new_token(self, person_id: str, name: str) -> tuple[Token, str]:
        """A new token for this person: its record, and the token itself (shown once)."""
        label = display_name(name or "script")[:TOKEN_NAME_MAX]
        if len(self.tokens(person_id)) >= TOKENS_PER_PERSON:
            raise Refused(f"at most {TOKENS_PER_PERSON} tokens: revoke one first")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        created = now()
        self.db.execute(
            "INSERT INTO tokens (id, person, name, digest, created) VALUES (?, ?, ?, ?, ?)",
            (token_id, person_id, label, digest(secret), created),
        )
        return Token(token_id, label, created, None), f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def tokens(self, person_id: str) -> list[Token]:
        rows = self.db.execute(
            "SELECT id, name, created, last_used, last_address FROM tokens WHERE person = ? "
            "ORDER BY created DESC, id",
            (person_id,),
        )
        return [Token(*r) for r in rows]

    def revoke(self, person_id: str, token_id: str) -> bool:
        return bool(
            self.db.execute(
                "DELETE FROM tokens WHERE id = ? AND person = ?", (token_id, person_id)
            ).rowcount
        )

    def by_token(self, token: str, address: str | None = None) -> Person | None:
        """The person a token belongs to, or None (malformed, unknown, revoked or wrong).
        When and from where it was used is written at most once a minute, or on a move."""
        parts = split_token(token)
        if parts is None:
            return None
        token_id, secret = parts
        row = self.db.execute(
            "SELECT t.digest, p.id, p.name, p.operator, t.last_used, t.last_address "
            "FROM tokens t JOIN people p ON p.id = t.person WHERE t.id = ?",
            (token_id,),
        ).fetchone()
        if row is None or not hmac.compare_digest(row[0], digest(secret)):
            return None
        if stale(row[4]) or (address is not None and address != row[5]):
            self.db.execute(
                "UPDATE tokens SET last_used = ?, last_address = ? WHERE id = ?",
                (now(), address, token_id),
            )
        return Person(row[1], row[2], bool(row[3]))

    def live_tokens(self, token_ids: Iterable[str]) -> set[str]:
        """Which of these tokens still exist (the gateway's sweep of its open sockets)."""
        return ids_among(self.db, "SELECT id FROM tokens WHERE id IN ({})", token_ids)

    # --- plumbing ----------------------------------------------------------------------------

    def transaction(self) -> _Transaction:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception) around several writes."""
        return _Transaction(self.db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT: two gateway workers seeding at once take turns."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
