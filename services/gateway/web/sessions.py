"""Who is asking: a signed-in person (an encrypted session cookie), a script (a personal
API token, ``Authorization: Bearer``), or nobody.

The session is aiohttp-session's ``EncryptedCookieStorage``: the cookie holds the sign-in's
``<handle>.<secret>`` and the session's CSRF token, encrypted and signed with
``DOVECOTE_SESSION_KEY`` (Fernet), so no one can read or forge it. With ``DATABASE_URL`` and
no such variable, the key is the one kept in the accounts store (``SHARED_KEY``), made by
the first gateway to start: every gateway on every machine reads the same. The sign-in itself is a
row of the accounts store (``accounts/signins.py``): the cookie counts only while that row is there,
so signing out ends every copy of the cookie at once, wherever it was copied to. It is
``HttpOnly`` (no script reads it), ``SameSite=Lax`` (no other site's form or script sends
it), ``Secure`` when ``PUBLIC_URL`` is https, and expires after ``SESSION_MAX_AGE``.

A request that carries ``Authorization`` is judged by that alone: a wrong token is a 401,
never a fall back to the cookie. So what a browser sends on its own (the cookie) and what a
script sends on purpose (the token) never mix, and only the first needs CSRF checks
(``edge.py``). Either way the request knows its *credential*, ``session:<handle>`` or
``token:<id>``: a websocket is tied to it, and closed when it ends (``accounts/signouts.py``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import warnings
from typing import Any

from aiohttp import web
from aiohttp_session import Session, get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from dovecote.config import ConfigError
from services.gateway.accounts.credentials import Person, split_token
from services.gateway.context import CTX

COOKIE = "dovecote_session"
# With DATABASE_URL and no DOVECOTE_SESSION_KEY, the key every gateway reads from the
# accounts store (``People.shared_key``): the first gateway to start makes it.
SHARED_KEY = "session_key"
PERSON = web.RequestKey("person", object)  # Person | None, once asked
CREDENTIAL = web.RequestKey("credential", object)  # "session:<handle>", "token:<id>" or None
TOKEN_HELP = "send Authorization: Bearer <token> (make one on /account)"
# A stale cookie (a new DOVECOTE_SESSION_KEY, an expired session) or a forged one is just a
# signed-out visitor: not worth a warning line per request (anyone could fill the log).
logging.getLogger("aiohttp_session").setLevel(logging.ERROR)
# aiohttp-session 2.12 keys the request by string, which aiohttp 3.10+ warns about: its own
# code, harmless, and not a line for the gateway's log.
warnings.filterwarnings("ignore", category=web.NotAppKeyWarning, module="aiohttp_session")


def check_key(key: str) -> str:
    """``DOVECOTE_SESSION_KEY`` as Fernet wants it: 32 random bytes, url-safe base64."""
    try:
        raw = base64.urlsafe_b64decode(key.encode())
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            "DOVECOTE_SESSION_KEY must be 32 random bytes in url-safe base64 (make one with "
            "`python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32))"
            ".decode())'`)"
        )
    return key


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def middleware(key: str, max_age: int, secure: bool) -> Any:
    storage = EncryptedCookieStorage(
        key,
        cookie_name=COOKIE,
        max_age=max_age,
        secure=secure,
        httponly=True,
        samesite="Lax",
    )
    return session_middleware(storage)


def bearer(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None without the header; 401 when
    the header is there but says something else."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorised(f"Authorization must be `Bearer <token>`: {TOKEN_HELP}")
    return token.strip()


def unauthorised(reason: str) -> web.HTTPUnauthorized:
    error = web.HTTPUnauthorized(text=reason)
    error.headers["WWW-Authenticate"] = 'Bearer realm="dovecote"'
    return error


async def person(request: web.Request) -> Person | None:
    """The person asking, or None (signed out). 401 for a wrong or revoked token."""
    if PERSON in request:
        found: Person | None = request[PERSON]  # type: ignore[assignment]
        return found
    people = request.app[CTX].people
    token = bearer(request)
    credential: str | None = None
    if token is not None:
        found = people.by_token(token, request.remote)
        parts = split_token(token)
        if found is None or parts is None:
            raise unauthorised(f"unknown or revoked token: {TOKEN_HELP}")
        credential = f"token:{parts[0]}"
    else:
        found = None
        session = await get_session(request)
        value = session.get("signin")
        live = people.signins.find(value, request.remote) if isinstance(value, str) else None
        if live is not None:
            handle, person_id = live
            found = people.get(person_id)
            credential = f"session:{handle}"
        elif value is not None:  # ended elsewhere, or expired: the cookie forgets it
            del session["signin"]
    request[PERSON], request[CREDENTIAL] = found, credential
    return found


def credential(request: web.Request) -> str | None:
    """How the person of this request signed in (after ``person``)."""
    value = request.get(CREDENTIAL)
    return value if isinstance(value, str) else None


async def need_person(request: web.Request) -> Person:
    found = await person(request)
    if found is None:
        raise unauthorised(f"sign in first (/signin), or {TOKEN_HELP}")
    return found


async def need_signed_in(request: web.Request) -> Person:
    """A person in a browser session (not a token): account pages only."""
    if "Authorization" in request.headers:
        raise web.HTTPForbidden(text="account pages need a signed-in browser, not a token")
    found = await person(request)
    if found is None:
        raise web.HTTPSeeOther("/signin")
    return found


async def csrf_token(request: web.Request) -> str:
    """This session's CSRF token, made (and the session cookie set) on first use."""
    session = await get_session(request)
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return token


async def expected_csrf(request: web.Request) -> str | None:
    session = await get_session(request)
    token = session.get("csrf")
    return token if isinstance(token, str) else None


async def sign_in(request: web.Request, who: Person) -> Session:
    """A new sign-in for this person: a row in the accounts store, a new cookie and a new
    CSRF token (whatever the browser held before, e.g. a session an attacker planted, is
    dropped)."""
    ctx = request.app[CTX]
    value = ctx.people.signins.start(
        who.id, ctx.session_max_age, request.remote, request.headers.get("User-Agent")
    )
    session = await new_session(request)
    session["signin"] = value
    session["csrf"] = secrets.token_urlsafe(24)
    request[PERSON], request[CREDENTIAL] = who, f"session:{value.partition('.')[0]}"
    return session


async def sign_out(request: web.Request) -> str | None:
    """End this browser's sign-in (the row, so every copy of the cookie) and forget the
    cookie; the credential ended, if there was one."""
    await person(request)
    ended = credential(request)
    if ended is not None and ended.startswith("session:"):
        request.app[CTX].people.signins.end(ended.removeprefix("session:"))
    session = await get_session(request)
    session.invalidate()
    request[PERSON], request[CREDENTIAL] = None, None
    return ended
