"""Invitations: with ``SIGNUP=invite``, a new account needs a code an operator made.

``SIGNUP`` says who may make an account at ``/signup``:

- ``open``: anyone (the default of a demo run);
- ``invite``: someone holding an unused invitation, made by an operator on ``/account`` or
  with ``dovecote admin gateway invite``; each works once, within 7 days (``--days``);
- ``closed``: no one; operators make accounts with ``dovecote admin gateway add``.

A code is ``dci_<id>_<secret>``, shown once to the operator who made it (as a sign-up link);
only a SHA-256 of the secret is kept, as for tokens.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from dovecote.config import ConfigError
from services.gateway.accounts.rows import Tables, digest, stamp

SCHEMA = """
CREATE TABLE IF NOT EXISTS invites (
    id        TEXT PRIMARY KEY,   -- public part, in the code itself
    digest    BLOB NOT NULL,      -- SHA-256 of the secret part
    made_by   TEXT NOT NULL,      -- the operator (or 'dovecote admin gateway')
    created   TEXT NOT NULL,
    expires   TEXT NOT NULL,
    used_by   TEXT,               -- the account it made, once used
    used      TEXT
);
"""
Signup = Literal["open", "invite", "closed"]
MODES: tuple[Signup, ...] = ("open", "invite", "closed")
_CODE_RE = re.compile(r"^dci_([0-9a-f]{12})_([A-Za-z0-9_-]{32})$")
OPEN_INVITES_MAX = 200


class Refused(ValueError):
    """A code that does not let anyone in; ``str()`` says why."""


def signup_mode(raw: str) -> Signup:
    text = (raw or "open").strip().lower()
    for mode in MODES:
        if text == mode:
            return mode
    raise ConfigError(f"SIGNUP must be one of {', '.join(MODES)}: {raw!r}")


@dataclass(frozen=True)
class Invite:
    id: str
    made_by: str
    created: str
    expires: str


class Invites(Tables):
    schema = SCHEMA

    def make(self, made_by: str, days: int = 7) -> tuple[Invite, str]:
        """A new invitation: its record, and the code (shown once)."""
        if len(self.open()) >= OPEN_INVITES_MAX:
            raise Refused(f"at most {OPEN_INVITES_MAX} open invitations: withdraw some first")
        now = datetime.now(UTC)
        invite = Invite(
            secrets.token_hex(6), made_by, stamp(now), stamp(now + timedelta(days=days))
        )
        secret = secrets.token_urlsafe(24)
        self.db.execute(
            "INSERT INTO invites (id, digest, made_by, created, expires) VALUES (?, ?, ?, ?, ?)",
            (invite.id, digest(secret), made_by, invite.created, invite.expires),
        )
        return invite, f"dci_{invite.id}_{secret}"

    def open(self) -> list[Invite]:
        rows = self.db.execute(
            "SELECT id, made_by, created, expires FROM invites WHERE used IS NULL "
            "AND expires > ? ORDER BY created DESC, id",
            (stamp(datetime.now(UTC)),),
        )
        return [Invite(*r) for r in rows]

    def withdraw(self, invite_id: str) -> bool:
        cursor = self.db.execute("DELETE FROM invites WHERE id = ? AND used IS NULL", (invite_id,))
        return bool(cursor.rowcount)

    def check(self, code: str) -> str:
        """The id of a usable invitation; ``Refused`` for any other code."""
        found = _CODE_RE.match(code.strip())
        row = (
            self.db.execute(
                "SELECT digest, expires, used FROM invites WHERE id = ?", (found[1],)
            ).fetchone()
            if found
            else None
        )
        if found is None or row is None or not hmac.compare_digest(row[0], digest(found[2])):
            raise Refused("that invitation code is not one of ours: check it, or ask for another")
        if row[2] is not None:
            raise Refused("that invitation was used already: ask for another")
        if row[1] <= stamp(datetime.now(UTC)):
            raise Refused("that invitation has expired: ask for another")
        return found[1]

    def use(self, invite_id: str, person: str) -> bool:
        """Spend an invitation on the account it made; False if someone spent it first."""
        cursor = self.db.execute(
            "UPDATE invites SET used_by = ?, used = ? WHERE id = ? AND used IS NULL",
            (person, stamp(datetime.now(UTC)), invite_id),
        )
        return bool(cursor.rowcount)
