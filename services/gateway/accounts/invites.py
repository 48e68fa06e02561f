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

from sqlalchemy import text

from dovecote.config import ConfigError
from services.gateway.accounts.rows import Tables, digest, stamp

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
    """Invitations (``invites``): a code's id, its secret's digest, who made it, until when,
    and whom it made an account for."""

    def make(self, made_by: str, days: int = 7) -> tuple[Invite, str]:
        """A new invitation: its record, and the code (shown once)."""
        if len(self.open()) >= OPEN_INVITES_MAX:
            raise Refused(f"at most {OPEN_INVITES_MAX} open invitations: withdraw some first")
        now = datetime.now(UTC)
        invite = Invite(
            secrets.token_hex(6), made_by, stamp(now), stamp(now + timedelta(days=days))
        )
        secret = secrets.token_urlsafe(24)
        with self.transaction() as conn:
            conn.execute(
                text(
                    "INSERT INTO invites (id, digest, made_by, created, expires) "
                    "VALUES (:id, :digest, :made_by, :created, :expires)"
                ),
                {
                    "id": invite.id,
                    "digest": digest(secret),
                    "made_by": made_by,
                    "created": invite.created,
                    "expires": invite.expires,
                },
            )
        return invite, f"dci_{invite.id}_{secret}"

    def open(self) -> list[Invite]:
        with self.transaction() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, made_by, created, expires FROM invites WHERE used IS NULL "
                    "AND expires > :now ORDER BY created DESC, id"
                ),
                {"now": stamp(datetime.now(UTC))},
            ).all()
        return [Invite(*r) for r in rows]

    def withdraw(self, invite_id: str) -> bool:
        with self.transaction() as conn:
            gone = conn.execute(
                text("DELETE FROM invites WHERE id = :id AND used IS NULL"), {"id": invite_id}
            )
        return bool(gone.rowcount)

    def check(self, code: str) -> str:
        """The id of a usable invitation; ``Refused`` for any other code."""
        found = _CODE_RE.match(code.strip())
        row = None
        if found:
            with self.transaction() as conn:
                row = conn.execute(
                    text("SELECT digest, expires, used FROM invites WHERE id = :id"),
                    {"id": found[1]},
                ).first()
        if found is None or row is None or not hmac.compare_digest(row[0], digest(found[2])):
            raise Refused("that invitation code is not one of ours: check it, or ask for another")
        if row[2] is not None:
            raise Refused("that invitation was used already: ask for another")
        if row[1] <= stamp(datetime.now(UTC)):
            raise Refused("that invitation has expired: ask for another")
        return found[1]

    def use(self, invite_id: str, person: str) -> bool:
        """Spend an invitation on the account it made; False if someone spent it first."""
        with self.transaction() as conn:
            spent = conn.execute(
                text(
                    "UPDATE invites SET used_by = :by, used = :at WHERE id = :id AND used IS NULL"
                ),
                {"by": person, "at": stamp(datetime.now(UTC)), "id": invite_id},
            )
        return bool(spent.rowcount)
