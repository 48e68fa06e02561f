"""The way in and out of an account: sign up, sign in, sign out (the account page is
``account_page.py``).

Plain HTML forms (they work without the page's script), answered with a redirect once
done (POST, then GET: a reload does not post twice). Every form carries the session's CSRF
token, and the edge checks it (or the exact Origin) before any of this runs.

| method and path      | who              | what                                          |
|----------------------|------------------|-----------------------------------------------|
| GET/POST /signup     | as ``SIGNUP`` says | a new account, signed in (open, invite, closed) |
| GET/POST /signin     | anyone           | sign in (a new sign-in, ``signins.py``)       |
| POST     /signout    | a signed-in page | sign out: every copy of the cookie, its sockets |

Sign-in attempts are limited per address (``RATE_SIGNIN_ADDRESS``), per gateway worker
(``RATE_SIGNIN_ALL``) and per account across every address (``guesses.py``); a wrong
password and an unknown name get the same answer, after the same time. Sign-ups are
limited per address and per worker (``RATE_SIGNUP_*``), may not take a reserved name or
pass for another person (``names.py``).
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from aiohttp import web

from services.gateway.accounts import credentials, invites, signouts
from services.gateway.accounts.credentials import Refused
from services.gateway.accounts.forms import fields, hashing, page
from services.gateway.context import CTX
from services.gateway.web import sessions
from services.gateway.web.limits import wait_words


def add_routes(app: web.Application) -> None:
    app.router.add_get("/signin", signin_page)
    app.router.add_post("/signin", signin)
    app.router.add_get("/signup", signup_page)
    app.router.add_post("/signup", signup)
    app.router.add_post("/signout", signout)


# --- signing in and out ------------------------------------------------------------------------


async def signin_page(request: web.Request) -> web.Response:
    # ?ended=1: a page whose socket was closed because its sign-in ended (4401).
    ended = "ended" in request.query
    notice = "You were signed out: this browser's sign-in was ended." if ended else None
    return await page(request, "accounts/signin.html", username="", error=None, notice=notice)


async def signin(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ctx.limits.check("signin", None, request)
    form = await fields(request, "username", "password")
    username = form["username"].strip().lower()
    device = ctx.devices.device_of(request, username)
    key, rate = (
        (f"device:{device}", ctx.limits.device)
        if device
        else (f"account:{username[:64]}", ctx.limits.account)
    )
    reservation, wait = ctx.people.guesses.reserve(key, rate)
    if wait:
        return await page(
            request,
            "accounts/signin.html",
            status=429,
            username=username[:64],
            error=f"Too many sign-in attempts for this name: try again in {wait_words(wait)} "
            "(a browser you signed in with before is not held back).",
            retry_after=max(1, math.ceil(wait)),
        )
    stored = ctx.people.password_hash(username)
    if not await hashing(ctx, credentials.check_password, stored, form["password"]):
        return await page(
            request,
            "accounts/signin.html",
            status=401,
            username=username[:64],
            error="Wrong user name or password.",
        )
    ctx.people.guesses.forgive(reservation)  # the right password: no guess
    who = ctx.people.get(username)
    assert who is not None  # the password matched its hash
    await sessions.sign_in(request, who)
    done = web.HTTPSeeOther("/")
    ctx.devices.remember(done, who.id, device or secrets.token_urlsafe(12))
    raise done


async def signup_page(request: web.Request) -> web.Response:
    invite = request.query.get("invite", "")[:80]
    return await _signup(request, 200, username="", name="", invite=invite, error=None)


async def _signup(request: web.Request, status: int, **context: Any) -> web.Response:
    return await page(
        request, "accounts/signup.html", status=status, mode=request.app[CTX].signup, **context
    )


async def signup(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    if ctx.signup == "closed":
        raise web.HTTPForbidden(text="sign-up is closed here: ask an operator for an account")
    ctx.limits.check("signup", None, request)
    form = await fields(request, "username", "name", "password", "invite")
    username, name = form["username"].strip().lower(), form["name"]
    try:
        invite = ctx.people.invites.check(form["invite"]) if ctx.signup == "invite" else None
        username, shown = ctx.people.vet(username, name or username)
        credentials.valid_password(form["password"])
        hashed = await hashing(ctx, credentials.hash_password, form["password"])
        with ctx.people.transaction():  # the invitation is spent with the account, or not
            if invite is not None and not ctx.people.invites.use(invite, username):
                raise Refused("that invitation was used a moment ago: ask for another")
            who = ctx.people.add(username, shown, hashed)
    except (Refused, invites.Refused) as exc:
        status = 409 if "taken" in str(exc) else 400
        return await _signup(
            request,
            status,
            username=username[:64],
            name=name[:80],
            invite=form["invite"][:80],
            error=str(exc),
        )
    await sessions.sign_in(request, who)
    raise web.HTTPSeeOther("/")


async def signout(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.person(request)
    ended = await sessions.sign_out(request)
    if who is not None and ended is not None:
        signouts.ended(ctx, who, [ended])
    raise web.HTTPSeeOther("/")
