"""What an account is made of and checked by: the person, passwords, names and tokens.

The rules a value must pass before the accounts store (``people.py``) keeps it, apart from
the store so that its parts and its pages share them:

- Passwords are hashed with Argon2id (argon2-cffi's RFC 9106 parameters: 64 MiB, 3 passes),
  ~0.1 s of CPU each, so ``hash_password``/``check_password`` are called off the event
  loop. A name that has no account costs the same time as a wrong password: how long a
  sign-in takes does not say who has an account.
- A token is ``dct_<id>_<secret>`` (``split_token``): the id finds the row, only a SHA-256
  of the secret is stored.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dovecote.topics import TopicError, check_id
from services.gateway.accounts.rows import stamp

NAME_MAX = 80
PASSWORD_MIN = 8
PASSWORD_MAX = 1024  # bytes: hashing a megabyte of "password" is a denial of service
TOKEN_PREFIX = "dct"
_TOKEN_RE = re.compile(r"^dct_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_SPACE = re.compile(r"\s+")
LAST_USED_EVERY = timedelta(minutes=1)  # a token used often is written once a minute


class Refused(ValueError):
    """Input the accounts refuse; ``str()`` says why, for the person who typed it."""


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    operator: bool = False  # sees the operations page, dead letters, traces and /metrics


@dataclass(frozen=True)
class Token:
    id: str
    name: str
    created: str
    last_used: str | None
    last_address: str | None = None


_hasher = PasswordHasher()  # argon2-cffi's defaults: RFC 9106's low-memory profile, Argon2id
# What a sign-in for a name with no account is checked against, so it takes as long: a hash
# of a random password nobody kept (no one signs in with it: there is no account), made with
# the parameters above; hashing one at every import cost each gateway ~0.2 s of CPU. Made
# afresh should argon2-cffi's defaults move, so it always costs what a real one does.
_NOBODY_KEPT = (
    "$argon2id$v=19$m=65536,t=3,p=4$2LEmZtbd4DqVDktEmmOqXQ$"
    "pAtTBpEFvwXVAd7g4kfncRy2sXpm/WpXzLu37jZcmPM"
)
_NOBODY = (
    _hasher.hash(secrets.token_urlsafe(16))
    if _hasher.check_needs_rehash(_NOBODY_KEPT)
    else _NOBODY_KEPT
)


def now() -> str:
    return stamp()


def hash_password(password: str) -> str:
    """Slow on purpose (~0.1 s): call it in a thread."""
    return _hasher.hash(valid_password(password))


def check_password(stored: str | None, password: str) -> bool:
    """Slow on purpose, and as slow for ``stored=None`` (no such person): call it in a thread."""
    try:
        ok = _hasher.verify(stored or _NOBODY, password.encode()[:PASSWORD_MAX])
    except (VerificationError, InvalidHashError):
        return False
    return ok and stored is not None


def valid_password(password: str) -> str:
    if len(password) < PASSWORD_MIN:
        raise Refused(f"a password has at least {PASSWORD_MIN} characters")
    if len(password.encode()) > PASSWORD_MAX:
        raise Refused(f"a password has at most {PASSWORD_MAX} bytes")
    return password


def valid_user_id(text: str) -> str:
    try:
        return check_id(text.strip(), "user name")
    except TopicError:
        raise Refused(
            "a user name is 1-64 of a-z 0-9 _ - (lower case, no spaces), starting with a "
            "letter or digit"
        ) from None


def display_name(text: str) -> str:
    """A display name from free text: control and format characters (bidi overrides) go,
    whitespace collapses, the length is bounded. Only ever shown as text."""
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in unicodedata.normalize("NFC", text)
        if ch.isspace() or unicodedata.category(ch)[0] != "C"
    )
    name = _SPACE.sub(" ", kept).strip()[:NAME_MAX].strip()
    if not name:
        raise Refused("say what to call you (a display name)")
    return name


def stale(stamp: str | None) -> bool:
    """True when a last-used time is worth writing again (older than a minute)."""
    cutoff = (datetime.now(UTC) - LAST_USED_EVERY).isoformat(timespec="seconds")
    return stamp is None or stamp < cutoff.replace("+00:00", "Z")


def split_token(token: str) -> tuple[str, str] | None:
    found = _TOKEN_RE.match(token)
    return (found[1], found[2]) if found else None
