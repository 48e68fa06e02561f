"""The account page, ``/account``: where you are signed in, your tokens, your password, and
for operators the invitations.

| method and path                        | who               | what                          |
|----------------------------------------|-------------------|-------------------------------|
| GET  /account                          | a signed-in page  | sign-ins, tokens (when, where)|
| POST /account/password                 | a signed-in page  | a new password: every other   |
|                                        |                   | sign-in ends, this one renews |
| POST /account/signins/{handle}/end     | a signed-in page  | sign out that browser         |
| POST /account/signout-everywhere       | a signed-in page  | every sign-in ends, this too  |
| POST /account/tokens                   | a signed-in page  | a new token (shown once)      |
| POST /account/tokens/{id}/revoke       | a signed-in page  | revoke one (its sockets close)|
| POST /account/invites                  | an operator       | an invitation (shown once)    |
| POST /account/invites/{id}/withdraw    | an operator       | withdraw an unused one        |

Whatever ends a sign-in or a token ends it in the accounts store (every copy of the cookie
is refused at once, on every gateway) and closes its sockets (``signouts.py``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.gateway.accounts import credentials, invites, signouts
from services.gateway.accounts.credentials import Person, Refused
from services.gateway.accounts.forms import fields, hashing, page
from services.gateway.context import CTX
from services.gateway.web import sessions
from services.gateway.web.limits import wait_words


def add_routes(app: web.Application) -> None:
    app.router.add_get("/account", account_page)
    app.router.add_post("/account/password", change_password)
    app.router.add_post("/account/signins/{handle}/end", end_signin)
    app.router.add_post("/account/signout-everywhere", signout_everywhere)
    app.router.add_post("/account/tokens", new_token)
    app.router.add_post("/account/tokens/{token}/revoke", revoke_token)
    app.router.add_post("/account/invites", new_invite)
    app.router.add_post("/account/invites/{invite}/withdraw", withdraw_invite)


async def account_page(request: web.Request) -> web.Response:
    who = await sessions.need_signed_in(request)
    return await _account(request, who)


async def _account(
    request: web.Request, who: Person, status: int = 200, **shown: Any
) -> web.Response:
    ctx = request.app[CTX]
    this = sessions.credential(request)
    return await page(
        request,
        "accounts/account.html",
        status=status,
        tokens=ctx.people.tokens(who.id),
        signins=ctx.people.signins.of(who.id),
        this_signin=this.removeprefix("session:") if this else None,
        operator=ctx.operations.is_operator(who),
        invites=ctx.people.invites.open() if ctx.operations.is_operator(who) else [],
        signup=ctx.signup,
        public_url=ctx.public_url,
        **{"made": None, "invite": None, "error": None, "notice": None, **shown},
    )


# --- password and sign-ins -------------------------------------------------------------------


async def change_password(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_signed_in(request)
    ctx.limits.check("signin", None, request)
    form = await fields(request, "current", "password")
    # A guess at the current password is a guess at the account (a stolen cookie's holder
    # would try here): counted with the sign-in form's, the right one forgiven.
    reservation, wait = ctx.people.guesses.reserve(f"account:{who.id}", ctx.limits.account)
    if wait:
        return await _account(
            request,
            who,
            status=429,
            error=f"Too many wrong passwords for this account: try again in {wait_words(wait)}.",
        )
    stored = ctx.people.password_hash(who.id)
    if not await hashing(ctx, credentials.check_password, stored, form["current"]):
        return await _account(request, who, status=403, error="Your current password is wrong.")
    ctx.people.guesses.forgive(reservation)
    try:
        hashed = await hashing(ctx, credentials.hash_password, form["password"])
    except Refused as exc:
        return await _account(request, who, status=400, error=str(exc))
    ctx.people.set_password(who.id, hashed)
    # Every sign-in ends, this browser's too (a copy of its cookie may be what was stolen);
    # this browser gets a new one at once.
    ended = [f"session:{h}" for h in ctx.people.signins.end_all(who.id)]
    await sessions.sign_in(request, who)
    signouts.ended(ctx, who, ended)
    return await _account(
        request,
        who,
        notice=f"Password changed; {max(0, len(ended) - 1)} other sign-in(s) ended. "
        "Tokens still work: revoke below any you do not know.",
    )


async def end_signin(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_signed_in(request)
    handle = request.match_info["handle"]
    if f"session:{handle}" == sessions.credential(request):
        await sessions.sign_out(request)
    elif not ctx.people.signins.end(handle, who.id):
        raise web.HTTPNotFound(text="no such sign-in of yours")
    signouts.ended(ctx, who, [f"session:{handle}"])
    raise web.HTTPSeeOther("/account" if sessions.credential(request) else "/signin")


async def signout_everywhere(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_signed_in(request)
    ended = [f"session:{h}" for h in ctx.people.signins.end_all(who.id)]
    await sessions.sign_out(request)
    signouts.ended(ctx, who, ended)
    raise web.HTTPSeeOther("/signin")


# --- tokens ----------------------------------------------------------------------------------


async def new_token(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_signed_in(request)
    form = await fields(request, "name")
    try:
        record, token = ctx.people.new_token(who.id, form["name"])
    except Refused as exc:
        return await _account(request, who, status=400, error=str(exc))
    if request.headers.get("Accept") == "application/json":
        return web.json_response({"id": record.id, "name": record.name, "token": token}, status=201)
    return await _account(request, who, status=201, made=token)


async def revoke_token(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_signed_in(request)
    token_id = request.match_info["token"]
    if not ctx.people.revoke(who.id, token_id):
        raise web.HTTPNotFound(text="no such token of yours")
    signouts.ended(ctx, who, [f"token:{token_id}"])
    raise web.HTTPSeeOther("/account")


# --- invitations (operators) -----------------------------------------------------------------


async def _need_operator(request: web.Request) -> Person:
    who = await sessions.need_signed_in(request)
    if not request.app[CTX].operations.is_operator(who):
        raise web.HTTPForbidden(text="invitations are made by operators")
    return who


async def new_invite(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await _need_operator(request)
    try:
        _, code = ctx.people.invites.make(who.id)
    except invites.Refused as exc:
        return await _account(request, who, status=400, error=str(exc))
    return await _account(request, who, status=201, invite=code)


async def withdraw_invite(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    await _need_operator(request)
    if not ctx.people.invites.withdraw(request.match_info["invite"]):
        raise web.HTTPNotFound(text="no such unused invitation")
    raise web.HTTPSeeOther("/account")
