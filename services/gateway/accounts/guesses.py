"""Password guessing, limited per account across every address, without locking the owner out.

A limit per address alone lets three addresses guess three times as often (61 guesses at
one password in 9 s, measured). So every sign-in attempt is also counted against the name
it tries (``RATE_SIGNIN_ACCOUNT``, default 20 an hour), in the accounts store, so every
gateway worker and machine that shares the store shares the count:

- the attempt is counted *before* the password is checked (a reservation), so a burst of
  parallel guesses cannot all pass a check made before any of them failed; the right
  password takes its reservation back, so only wrong ones count;
- at most N attempts in any window of the given length (a sliding window, not a bucket
  that refills mid-hour), and names with no account are counted the same way: the answer
  says nothing about who has one.

The owner would then be locked out by anyone guessing at their name. So a browser that has
signed in to that account before carries a **device cookie** (encrypted with the session
key, a year long, sent only to ``/signin``), and its attempts are counted against that
device (``RATE_SIGNIN_DEVICE``), not the account: a guesser fills the account's window, the
owner's own browser still signs in. (The device-cookie scheme of OWASP's authentication
guidance.) A person on a new device during an attack waits for the window, told how long.
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import text

from services.gateway.accounts.rows import Tables
from services.gateway.web.limits import Rate

DEVICE_COOKIE = "dovecote_device"
DEVICE_DAYS = 365
# PostgreSQL: reservations of one key take turns (a transaction-long advisory lock on the
# key, in a namespace of its own), so gateways counting at once never pass the limit
# together. SQLite's transactions take turns already (BEGIN IMMEDIATE).
TAKE_TURNS = text("SELECT pg_advisory_xact_lock(hashtext('accounts.guesses'), hashtext(:key))")


class Guesses(Tables):
    """Sign-in attempts per account and per known device, in the accounts store (``guesses``:
    one row per attempt, ``key`` and ``at``)."""

    def reserve(self, key: str, rate: Rate | None) -> tuple[int | None, float]:
        """Count one attempt under ``key`` (``account:<name>`` or ``device:<nonce>``):
        (its reservation, 0), or (None, seconds to wait) when over ``rate``."""
        if rate is None:
            return None, 0.0
        now = time.time()
        with self.transaction() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(TAKE_TURNS, {"key": key})
            conn.execute(
                text("DELETE FROM guesses WHERE key = :key AND at <= :since"),
                {"key": key, "since": now - rate.per},
            )
            count, oldest = conn.execute(
                text("SELECT count(*), min(at) FROM guesses WHERE key = :key"), {"key": key}
            ).one()
            if count >= rate.count:
                return None, max(1.0, oldest + rate.per - now)
            reservation = conn.execute(
                text("INSERT INTO guesses (key, at) VALUES (:key, :at) RETURNING id"),
                {"key": key, "at": now},
            ).scalar_one()
        return int(reservation), 0.0

    def forgive(self, reservation: int | None) -> None:
        """The password was right: that attempt was no guess."""
        if reservation is not None:
            with self.transaction() as conn:
                conn.execute(text("DELETE FROM guesses WHERE id = :id"), {"id": reservation})

    def purge(self, older_than: float = 86_400) -> int:
        with self.transaction() as conn:
            gone = conn.execute(
                text("DELETE FROM guesses WHERE at <= :before"),
                {"before": time.time() - older_than},
            )
        return int(gone.rowcount)


class DeviceCookies:
    """The cookie that marks a browser as one its owner signed in with before."""

    def __init__(self, session_key: str, secure: bool) -> None:
        self.fernet = Fernet(session_key.encode())
        self.secure = secure

    def device_of(self, request: web.Request, name: str) -> str | None:
        """The device's nonce if this browser signed in as ``name`` before, else None."""
        raw = request.cookies.get(DEVICE_COOKIE)
        if not raw:
            return None
        try:
            body = orjson.loads(self.fernet.decrypt(raw.encode(), ttl=DEVICE_DAYS * 86_400))
        except (InvalidToken, orjson.JSONDecodeError, ValueError):
            return None
        if not isinstance(body, dict) or body.get("u") != name:
            return None
        nonce = body.get("n")
        return nonce if isinstance(nonce, str) and len(nonce) <= 64 else None

    def remember(self, response: web.StreamResponse, name: str, nonce: str) -> None:
        value = self.fernet.encrypt(orjson.dumps({"u": name, "n": nonce})).decode()
        response.set_cookie(
            DEVICE_COOKIE,
            value,
            max_age=DEVICE_DAYS * 86_400,
            path="/signin",
            httponly=True,
            secure=self.secure,
            samesite="Strict",
        )
