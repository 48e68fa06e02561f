"""Rate limits per person, per address and overall: token buckets, answered with 429 +
Retry-After.

Each limit is ``N/SECONDS`` from the environment (``RATE_UPLOADS_PERSON=30/60``: a person may
upload 30 images in a burst, then one every 2 s); ``0`` turns it off. A request is counted
against its person *and* its address (the TCP peer: behind a proxy, the proxy's) *and* the
whole gateway worker where such a limit is set, so neither many people behind one address
nor one person from many addresses get past, and no crowd makes the worker hash passwords
all day.

The buckets live in the gateway worker's memory: with N workers behind one port a client
gets up to N times the rate, and a restart forgets them. One limit is kept in the shared
database when there is one (``DATABASE_URL``): uploads per person, counted by the images
store for every gateway on every machine (``take_over``; ``images/database.py``). An idle
bucket is full again, so it is dropped; what is held is bounded by the keys seen within one
refill period. The limit that guards one account against password guessing is not one of
these: it is kept in the accounts store, shared by every worker (``accounts/guesses.py``;
``RATE_SIGNIN_ACCOUNT``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from dovecote.config import ConfigError

MAX_KEYS = 100_000  # past this, full buckets are swept before a new key is added


@dataclass(frozen=True)
class Rate:
    count: int
    per: float  # seconds

    @classmethod
    def parse(cls, name: str, raw: str) -> Rate | None:
        text = raw.strip()
        if text in ("", "0", "off"):
            return None
        count, slash, per = text.partition("/")
        try:
            rate = cls(int(count), float(per) if slash else 1.0)
        except ValueError:
            rate = cls(0, 0)
        if rate.count < 1 or not 0 < rate.per <= 86_400:
            raise ConfigError(f"{name} must be N/SECONDS (e.g. 30/60) or 0 for no limit: {raw!r}")
        return rate


class Bucket:
    """Token buckets for one limit, one per key."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.refill = rate.count / rate.per  # tokens a second
        self.held: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def take(self, key: str, now: float | None = None) -> float:
        """0 if ``key`` may go now (a token is taken), else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, then = self.held.get(key, (float(self.rate.count), now))
        tokens = min(float(self.rate.count), tokens + (now - then) * self.refill)
        if tokens < 1:
            self.held[key] = (tokens, now)
            return (1 - tokens) / self.refill
        if key not in self.held and len(self.held) >= MAX_KEYS:
            self.sweep(now)
        self.held[key] = (tokens - 1, now)
        return 0.0

    def sweep(self, now: float) -> None:
        full = [
            k for k, (t, w) in self.held.items() if t + (now - w) * self.refill >= self.rate.count
        ]
        for key in full:
            del self.held[key]


def wait_words(wait: float) -> str:
    """``"12 s"``, ``"7 minutes"``: how long, for a person."""
    seconds = max(1, math.ceil(wait))
    return f"{seconds} s" if seconds < 120 else f"{math.ceil(seconds / 60)} minutes"


def too_many(what: str, wait: float) -> web.HTTPTooManyRequests:
    """429 that says how long to wait, in words and in ``Retry-After``."""
    return web.HTTPTooManyRequests(
        text=f"{what}: try again in {wait_words(wait)}",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


class Limits:
    """The gateway's limits, by what is limited: ``uploads``, ``commands``, ``signin``,
    ``signup``; and the two kept in the accounts store (``account``, ``device``)."""

    VARIABLES = {
        ("uploads", "person"): ("RATE_UPLOADS_PERSON", "30/60"),
        ("uploads", "address"): ("RATE_UPLOADS_ADDRESS", "60/60"),
        ("commands", "person"): ("RATE_COMMANDS_PERSON", "60/60"),
        ("commands", "address"): ("RATE_COMMANDS_ADDRESS", "120/60"),
        ("signin", "address"): ("RATE_SIGNIN_ADDRESS", "20/60"),
        # Argon2 costs ~0.1 CPU-s a check: at most ~3 CPU-s a second of this worker's time.
        ("signin", "all"): ("RATE_SIGNIN_ALL", "1800/60"),
        ("signup", "address"): ("RATE_SIGNUP_ADDRESS", "5/3600"),
        ("signup", "all"): ("RATE_SIGNUP_ALL", "100/3600"),
    }
    ACCOUNT = ("RATE_SIGNIN_ACCOUNT", "20/3600")  # guesses at one account (accounts/guesses.py)
    DEVICE = ("RATE_SIGNIN_DEVICE", "20/3600")  # from a browser that signed in before

    def __init__(self, env: Mapping[str, str]) -> None:
        self.buckets: dict[tuple[str, str], Bucket] = {}
        for key, (name, default) in self.VARIABLES.items():
            rate = Rate.parse(name, env.get(name, default))
            if rate is not None:
                self.buckets[key] = Bucket(rate)
        self.account = Rate.parse(self.ACCOUNT[0], env.get(*self.ACCOUNT))
        self.device = Rate.parse(self.DEVICE[0], env.get(*self.DEVICE))

    def take_over(self, what: str, kind: str) -> Rate | None:
        """This limit is counted elsewhere from now on (a shared store): its rate, if set."""
        bucket = self.buckets.pop((what, kind), None)
        return None if bucket is None else bucket.rate

    def wait(self, what: str, person: str | None, address: str | None) -> float:
        """0 if allowed (counted), else the seconds to wait. Every bucket that applies is
        charged only when all of them allow it."""
        waits = []
        for kind, key in (("person", person), ("address", address or "?"), ("all", "*")):
            bucket = self.buckets.get((what, kind))
            if bucket is not None and key is not None:
                waits.append((bucket, key))
        now = time.monotonic()
        worst = 0.0
        for bucket, key in waits:
            tokens, then = bucket.held.get(key, (float(bucket.rate.count), now))
            tokens = min(float(bucket.rate.count), tokens + (now - then) * bucket.refill)
            if tokens < 1:
                worst = max(worst, (1 - tokens) / bucket.refill)
        if worst:
            return worst
        for bucket, key in waits:
            bucket.take(key, now)
        return 0.0

    def check(self, what: str, person: str | None, request: web.Request) -> None:
        """Raise 429 with ``Retry-After`` when over a limit."""
        wait = self.wait(what, person, request.remote)
        if wait:
            raise too_many(f"too many {what}", wait)

    def retry_after(self, what: str, person: str | None, address: str | None) -> int:
        """For the websocket: 0 if allowed, else whole seconds to wait."""
        wait = self.wait(what, person, address)
        return max(1, math.ceil(wait)) if wait else 0
