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

from dovecote.sqlite import ids_among
from services.gateway.accounts.rows import Tables, digest, stamp

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id        TEXT PRIMARY KEY,   -- the handle: public, in the cookie beside the secret
    person    TEXT NOT NULL REFERENCES people (id),
    digest    BLOB NOT NULL,      -- SHA-256 of the secret part
    created   TEXT NOT NULL,
    expires   TEXT NOT NULL,
    last_used TEXT NOT NULL,
    address   TEXT,               -- where it was last used from (the TCP peer)
    agent     TEXT                -- the browser, as it named itself (User-Agent, cut short)
);
CREATE INDEX IF NOT EXISTS sessions_person ON sessions (person, created);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires);
"""
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
    schema = SCHEMA

    def start(self, person: str, max_age: int, address: str | None, agent: str | None) -> str:
        """A new sign-in for ``person``: the cookie's value, ``<handle>.<secret>``."""
        handle, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        self.db.execute(
            "INSERT INTO sessions (id, person, digest, created, expires, last_used, address, "
            "agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                handle,
                person,
                digest(secret),
                stamp(now),
                stamp(now + timedelta(seconds=max_age)),
                stamp(now),
                address,
                (agent or "")[:AGENT_MAX] or None,
            ),
        )
        self.db.execute(
            "DELETE FROM sessions WHERE person = ? AND id NOT IN (SELECT id FROM sessions "
            "WHERE person = ? ORDER BY created DESC, id LIMIT ?)",
            (person, person, SESSIONS_PER_PERSON),
        )
        return f"{handle}.{secret}"

    def find(self, value: str, address: str | None) -> tuple[str, str] | None:
        """(handle, person) of a live sign-in, or None: malformed, ended, expired or forged."""
        parts = split(value)
        if parts is None:
            return None
        handle, secret = parts
        row = self.db.execute(
            "SELECT digest, person, expires, last_used, address FROM sessions WHERE id = ?",
            (handle,),
        ).fetchone()
        if row is None or not hmac.compare_digest(row[0], digest(secret)):
            return None
        now = datetime.now(UTC)
        if row[2] <= stamp(now):
            self.end(handle)
            return None
        if row[3] < stamp(now - TOUCH_EVERY) or (address is not None and address != row[4]):
            self.db.execute(
                "UPDATE sessions SET last_used = ?, address = ? WHERE id = ?",
                (stamp(now), address, handle),
            )
        return handle, str(row[1])

    def of(self, person: str) -> list[SignIn]:
        rows = self.db.execute(
            "SELECT id, person, created, expires, last_used, address, agent FROM sessions "
            "WHERE person = ? AND expires > ? ORDER BY last_used DESC, id",
            (person, stamp(datetime.now(UTC))),
        )
        return [SignIn(*r) for r in rows]

    def end(self, handle: str, person: str | None = None) -> bool:
        """End one sign-in (only ``person``'s, when given); False if there was none."""
        if person is None:
            cursor = self.db.execute("DELETE FROM sessions WHERE id = ?", (handle,))
        else:
            cursor = self.db.execute(
                "DELETE FROM sessions WHERE id = ? AND person = ?", (handle, person)
            )
        return bool(cursor.rowcount)

    def end_all(self, person: str) -> list[str]:
        """End every sign-in of ``person``: the handles ended."""
        handles = [
            r[0] for r in self.db.execute("SELECT id FROM sessions WHERE person = ?", (person,))
        ]
        self.db.execute("DELETE FROM sessions WHERE person = ?", (person,))
        return handles

    def live(self, handles: Iterable[str]) -> set[str]:
        """Which of these sign-ins are still live (the gateway's sweep of its sockets)."""
        return ids_among(
            self.db,
            "SELECT id FROM sessions WHERE id IN ({}) AND expires > ?",
            handles,
            stamp(datetime.now(UTC)),
        )

    def purge(self) -> int:
        """Drop expired rows; how many."""
        now = stamp(datetime.now(UTC))
        return int(self.db.execute("DELETE FROM sessions WHERE expires <= ?", (now,)).rowcount)


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
