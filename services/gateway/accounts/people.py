"""The gateway's people: accounts, who follows whom, and personal API tokens.

The gateway owns the user directory (every service GETs a person or their followers from
it), so it owns the accounts behind it. One store (``dovecote.store``, schema ``accounts``):
a SQLite file (``ACCOUNTS_DB``) shared by every gateway worker of a machine, or the
``accounts`` schema of ``DATABASE_URL`` shared by every gateway of every machine. Its tables
are made and upgraded by ``migrations/`` (a file made before them is adopted in place).

Passwords, names and tokens pass the rules of ``credentials.py`` before they are kept; a
token's secret is kept as its SHA-256 only (32 random bytes: a slow hash adds nothing),
compared in constant time, and shown once, when it is made.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from dovecote.config import Settings
from dovecote.store import Place, Store
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
from services.gateway.accounts.rows import digest, ids_among
from services.gateway.accounts.signins import SignIns

ADD_PERSON = text(
    "INSERT INTO people (id, name, password, created, operator, id_key, name_key) "
    "VALUES (:id, :name, :password, :created, :operator, :id_key, :name_key) "
    "ON CONFLICT (id) DO NOTHING"
)
PEOPLE_WHO = "SELECT p.id, p.name FROM follows f JOIN people p ON p.id = f.{} "
FOLLOWERS = text(PEOPLE_WHO.format("follower") + "WHERE f.followee = :p ORDER BY f.since, p.id")
FOLLOWING = text(PEOPLE_WHO.format("followee") + "WHERE f.follower = :p ORDER BY f.since, p.id")

# The built-in demo people (seeded when DEMO_PASSWORD is set): Ada and Grace follow each
# other, so two browsers show a notification within a minute of `make run`.
DEMO_PEOPLE: list[dict[str, Any]] = [
    {"id": "ada", "name": "Ada Lovelace", "follows": ["grace", "linus"]},
    {"id": "grace", "name": "Grace Hopper", "follows": ["ada"]},
    {"id": "linus", "name": "Linus Torvalds", "follows": ["ada", "grace"]},
]

TOKEN_NAME_MAX = 60
TOKENS_PER_PERSON = 20


class People(Store):
    name = "accounts"
    migrations = Path(__file__).with_name("migrations")

    @classmethod
    def of(cls, settings: Settings) -> People:
        """The gateway's: ``DATABASE_URL``, else ``ACCOUNTS_DB``, else under the data dir."""
        return cls.at(settings, "ACCOUNTS_DB", settings.data_dir / "accounts.sqlite3")

    def __init__(self, where: Place) -> None:
        super().__init__(where)
        self._current: Connection | None = None  # the transaction of ``transaction()``
        # The store's other tables, each with its own module: who is signed in where,
        # invitations, and sign-in attempts per account.
        self.signins = SignIns(self)
        self.invites = Invites(self)
        self.guesses = Guesses(self)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction for every call of this store made inside the block (several
        writes as one: an invitation spent with the account it made), else one per call.
        Calls are synchronous: nothing else on the event loop runs inside the block."""
        if self._current is not None:
            yield self._current
            return
        with self.db.transaction() as conn:
            self._current = conn
            try:
                yield conn
            finally:
                self._current = None

    # --- accounts --------------------------------------------------------------------------

    def get(self, person_id: str) -> Person | None:
        with self.transaction() as conn:
            row = conn.execute(
                text("SELECT id, name, operator FROM people WHERE id = :id"), {"id": person_id}
            ).first()
        return Person(row[0], row[1], bool(row[2])) if row else None

    def password_hash(self, person_id: str) -> str | None:
        with self.transaction() as conn:
            row = conn.execute(
                text("SELECT password FROM people WHERE id = :id"), {"id": person_id}
            ).first()
        return str(row[0]) if row else None

    def set_password(self, person_id: str, password_hash: str) -> bool:
        with self.transaction() as conn:
            changed = conn.execute(
                text("UPDATE people SET password = :h WHERE id = :id"),
                {"h": password_hash, "id": person_id},
            )
        return bool(changed.rowcount)

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
            with self.transaction() as conn:
                row = conn.execute(
                    text(
                        "SELECT id, name FROM people WHERE id_key = :k OR name_key = :k "
                        "ORDER BY created, id LIMIT 1"
                    ),
                    {"k": key},
                ).first()
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
        with self.transaction() as conn:
            if not self._insert_person(conn, person, password_hash):
                raise Refused(f"the user name {person.id!r} is taken")
        return person

    def _insert_person(self, conn: Connection, person: Person, password_hash: str) -> bool:
        added = conn.execute(
            ADD_PERSON,
            {
                "id": person.id,
                "name": person.name,
                "password": password_hash,
                "created": now(),
                "operator": int(person.operator),
                "id_key": lookalike_key(person.id),
                "name_key": lookalike_key(person.name),
            },
        )
        return bool(added.rowcount)

    def set_operator(self, person_id: str, operator: bool) -> bool:
        """Make a person an operator, or no longer one; False if there is no such person."""
        with self.transaction() as conn:
            changed = conn.execute(
                text("UPDATE people SET operator = :o WHERE id = :id"),
                {"o": int(operator), "id": person_id},
            )
        return bool(changed.rowcount)

    def operators(self) -> list[Person]:
        with self.transaction() as conn:
            rows = conn.execute(
                text("SELECT id, name FROM people WHERE operator = 1 ORDER BY created, id")
            ).all()
        return [Person(r[0], r[1], True) for r in rows]

    def all(self, limit: int = 200) -> list[Person]:
        with self.transaction() as conn:
            rows = conn.execute(
                text("SELECT id, name, operator FROM people ORDER BY created, id LIMIT :n"),
                {"n": limit},
            ).all()
        return [Person(r[0], r[1], bool(r[2])) for r in rows]

    def count(self) -> int:
        with self.transaction() as conn:
            return int(conn.execute(text("SELECT count(*) FROM people")).scalar_one())

    def seed(self, people: list[dict[str, Any]], password_hash: str) -> list[str]:
        """Create the people who have no account yet (with their follows) and give every
        one of them this password; the ids of those created. Follows are set only when a
        person is created: an unfollow survives a restart."""
        created = []
        with self.transaction() as conn:
            for p in people:
                person = Person(valid_user_id(p["id"]), display_name(p["name"]))
                if self._insert_person(conn, person, password_hash):  # two gateways at once:
                    created.append(person.id)  # one makes them, the other finds them made
                else:
                    self.set_password(person.id, password_hash)
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
        with self.transaction() as conn:
            gone = conn.execute(
                text("DELETE FROM follows WHERE follower = :a AND followee = :b"),
                {"a": follower, "b": followee},
            )
        return bool(gone.rowcount)

    def follows(self, follower: str, followee: str) -> bool:
        with self.transaction() as conn:
            row = conn.execute(
                text("SELECT 1 FROM follows WHERE follower = :a AND followee = :b"),
                {"a": follower, "b": followee},
            ).first()
        return row is not None

    def followers(self, person_id: str) -> list[Person]:
        with self.transaction() as conn:
            rows = conn.execute(FOLLOWERS, {"p": person_id}).all()
        return [Person(r[0], r[1]) for r in rows]

    def following(self, person_id: str) -> list[Person]:
        with self.transaction() as conn:
            rows = conn.execute(FOLLOWING, {"p": person_id}).all()
        return [Person(r[0], r[1]) for r in rows]

    def _insert_follow(self, follower: str, followee: str) -> bool:
        # Both people checked first: a foreign key refused on PostgreSQL would abort the
        # whole transaction (a seed's), and SQLite does not enforce them.
        with self.transaction() as conn:
            known = ids_among(
                conn, text("SELECT id FROM people WHERE id IN :ids"), {follower, followee}
            )
            missing = sorted({follower, followee} - known)
            if missing:
                raise Refused(f"no such person {missing[0]!r}")
            added = conn.execute(
                text(
                    "INSERT INTO follows (follower, followee, since) VALUES (:a, :b, :at) "
                    "ON CONFLICT DO NOTHING"
                ),
                {"a": follower, "b": followee, "at": now()},
            )
        return bool(added.rowcount)

    # --- tokens ----------------------------------------------------------------------------

    def new_token(self, person_id: str, name: str) -> tuple[Token, str]:
        """A new token for this person: its record, and the token itself (shown once)."""
        label = display_name(name or "script")[:TOKEN_NAME_MAX]
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        created = now()
        with self.transaction() as conn:
            if len(self.tokens(person_id)) >= TOKENS_PER_PERSON:
                raise Refused(f"at most {TOKENS_PER_PERSON} tokens: revoke one first")
            conn.execute(
                text(
                    "INSERT INTO tokens (id, person, name, digest, created) "
                    "VALUES (:id, :person, :name, :digest, :created)"
                ),
                {
                    "id": token_id,
                    "person": person_id,
                    "name": label,
                    "digest": digest(secret),
                    "created": created,
                },
            )
        return Token(token_id, label, created, None), f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def tokens(self, person_id: str) -> list[Token]:
        with self.transaction() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, name, created, last_used, last_address FROM tokens "
                    "WHERE person = :p ORDER BY created DESC, id"
                ),
                {"p": person_id},
            ).all()
        return [Token(*r) for r in rows]

    def revoke(self, person_id: str, token_id: str) -> bool:
        with self.transaction() as conn:
            gone = conn.execute(
                text("DELETE FROM tokens WHERE id = :id AND person = :p"),
                {"id": token_id, "p": person_id},
            )
        return bool(gone.rowcount)

    def by_token(self, token: str, address: str | None = None) -> Person | None:
        """The person a token belongs to, or None (malformed, unknown, revoked or wrong).
        When and from where it was used is written at most once a minute, or on a move."""
        parts = split_token(token)
        if parts is None:
            return None
        token_id, secret = parts
        with self.transaction() as conn:
            row = conn.execute(
                text(
                    "SELECT t.digest, p.id, p.name, p.operator, t.last_used, t.last_address "
                    "FROM tokens t JOIN people p ON p.id = t.person WHERE t.id = :id"
                ),
                {"id": token_id},
            ).first()
            if row is None or not hmac.compare_digest(row[0], digest(secret)):
                return None
            if stale(row[4]) or (address is not None and address != row[5]):
                conn.execute(
                    text("UPDATE tokens SET last_used = :at, last_address = :a WHERE id = :id"),
                    {"at": now(), "a": address, "id": token_id},
                )
        return Person(row[1], row[2], bool(row[3]))

    def live_tokens(self, token_ids: Iterable[str]) -> set[str]:
        """Which of these tokens still exist (the gateway's sweep of its open sockets)."""
        with self.transaction() as conn:
            return ids_among(conn, text("SELECT id FROM tokens WHERE id IN :ids"), token_ids)

    # --- keys every gateway shares ------------------------------------------------------------

    def shared_key(self, name: str, make: Callable[[], str]) -> str:
        """The value kept under ``name``; the first gateway to ask makes it (``make``), and
        every other, on this machine or another, reads that one back."""
        with self.transaction() as conn:
            conn.execute(
                text(
                    "INSERT INTO shared_keys (name, value, created) VALUES (:n, :v, :at) "
                    "ON CONFLICT (name) DO NOTHING"
                ),
                {"n": name, "v": make(), "at": now()},
            )
            value = conn.execute(
                text("SELECT value FROM shared_keys WHERE name = :n"), {"n": name}
            ).scalar_one()
        return str(value)
