"""Sign-ins kept on the server: one row per signed-in browser, in the accounts store.

The session cookie (``web/sessions.py``) is encrypted, but on its own it cannot be taken back:
a copy made before sign-out would read the inbox and mint tokens until it expired. So the
cookie only names a row here, ``<handle>.<secret>``, and a request is signed in only while
that row exists. Signing out deletes the row, and every copy of the cookie is dead at once,
on every gateway that shares the accounts store.

- ``handle``: a public name for the sign-in (shown on ``/account``, and on the bus when the
  gateways close its sockets); ``secret``: 32 random bytes, only a SHA-256 of it is stored
  (as for tokens), so a copy of the database signs no one in.
- A row expires with the cookie (``SESSION_MAX_AGE`` after sign-in); when and from where it
  was last used is written at most once a minute (or when the address changes).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from services.gateway.accounts.rows import Tables, digest, ids_among, stamp

AGENT_MAX = 160
TOUCH_EVERY = timedelta(minutes=1)
SESSIONS_PER_PERSON = 100  # past this the oldest go first (a script signing in in a loop)


@dataclass(frozen=True)
class SignIn:
    handle: str
    person: str
    created: str
    expires: str
    last_used: str
    address: str | None
    agent: str | None


def split(value: str) -> tuple[str, str] | None:
    handle, dot, secret = value.partition(".")
    if not dot or len(handle) != 16 or not secret or len(secret) > 64:
        return None
    return handle, secret


class SignIns(Tables):
    """Sign-ins (``sessions``): one row per signed-in browser."""

    def start(self, person: str, max_age: int, address: str | None, agent: str | None) -> str:
        """A new sign-in for ``person``: the cookie's value, ``<handle>.<secret>``."""
        handle, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.transaction() as conn:
            conn.execute(
                text(
                    "INSERT INTO sessions (id, person, digest, created, expires, last_used, "
                    "address, agent) VALUES (:id, :person, :digest, :now, :expires, :now, "
                    ":address, :agent)"
                ),
                {
                    "id": handle,
                    "person": person,
                    "digest": digest(secret),
                    "now": stamp(now),
                    "expires": stamp(now + timedelta(seconds=max_age)),
                    "address": address,
                    "agent": (agent or "")[:AGENT_MAX] or None,
                },
            )
            conn.execute(
                text(
                    "DELETE FROM sessions WHERE person = :person AND id NOT IN (SELECT id FROM "
                    "sessions WHERE person = :person ORDER BY created DESC, id LIMIT :keep)"
                ),
                {"person": person, "keep": SESSIONS_PER_PERSON},
            )
        return f"{handle}.{secret}"

    def find(self, value: str, address: str | None) -> tuple[str, str] | None:
        """(handle, person) of a live sign-in, or None: malformed, ended, expired or forged."""
        parts = split(value)
        if parts is None:
            return None
        handle, secret = parts
        now = datetime.now(UTC)
        with self.transaction() as conn:
            row = conn.execute(
                text(
                    "SELECT digest, person, expires, last_used, address FROM sessions "
                    "WHERE id = :id"
                ),
                {"id": handle},
            ).first()
            if row is None or not hmac.compare_digest(row[0], digest(secret)):
                return None
            if row[2] <= stamp(now):
                conn.execute(text("DELETE FROM sessions WHERE id = :id"), {"id": handle})
                return None
            if row[3] < stamp(now - TOUCH_EVERY) or (address is not None and address != row[4]):
                conn.execute(
                    text("UPDATE sessions SET last_used = :now, address = :address WHERE id = :id"),
                    {"now": stamp(now), "address": address, "id": handle},
                )
        return handle, str(row[1])

    def of(self, person: str) -> list[SignIn]:
        with self.transaction() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, person, created, expires, last_used, address, agent FROM "
                    "sessions WHERE person = :person AND expires > :now "
                    "ORDER BY last_used DESC, id"
                ),
                {"person": person, "now": stamp(datetime.now(UTC))},
            ).all()
        return [SignIn(*r) for r in rows]

    def end(self, handle: str, person: str | None = None) -> bool:
        """End one sign-in (only ``person``'s, when given); False if there was none."""
        query, params = "DELETE FROM sessions WHERE id = :id", {"id": handle}
        if person is not None:
            query, params = f"{query} AND person = :person", {**params, "person": person}
        with self.transaction() as conn:
            gone = conn.execute(text(query), params)
        return bool(gone.rowcount)

    def end_all(self, person: str) -> list[str]:
        """End every sign-in of ``person``: the handles ended."""
        with self.transaction() as conn:
            rows = conn.execute(
                text("DELETE FROM sessions WHERE person = :person RETURNING id"),
                {"person": person},
            ).all()
        return [str(r[0]) for r in rows]

    def live(self, handles: Iterable[str]) -> set[str]:
        """Which of these sign-ins are still live (the gateway's sweep of its sockets)."""
        with self.transaction() as conn:
            return ids_among(
                conn,
                text("SELECT id FROM sessions WHERE id IN :ids AND expires > :now"),
                handles,
                now=stamp(datetime.now(UTC)),
            )

    def purge(self) -> int:
        """Drop expired rows; how many."""
        with self.transaction() as conn:
            gone = conn.execute(
                text("DELETE FROM sessions WHERE expires <= :now"),
                {"now": stamp(datetime.now(UTC))},
            )
        return int(gone.rowcount)


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"))
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def describe_agent(agent: str | None) -> str:
    """A browser as a person names it ("Firefox on Linux"), from its User-Agent; the text
    itself, cut short, when it is not a browser's ("curl/8.1", "Python/3.11 aiohttp")."""
    if not agent:
        return "an unnamed browser"
    browser = next((name for mark, name in _BROWSERS if mark in agent), None)
    if browser is None and "Safari/" in agent and "Version/" in agent:
        browser = "Safari"
    system = next((name for mark, name in _SYSTEMS if mark in agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return agent[:40]
