"""Accounts: sign up, sign in, sign out, and the personal API tokens of ``/account``.

Plain HTML forms (they work without the page's script), answered with a redirect once
done (POST, then GET: a reload does not post twice). Every form carries the session's CSRF
token, and the edge checks it (or the exact Origin) before any of this runs.

| method and path                      | who              | what                          |
|--------------------------------------|------------------|-------------------------------|
| GET/POST /signup                     | anyone           | a new account, signed in      |
| GET/POST /signin                     | anyone           | sign in (a new session)       |
| POST     /signout                    | a signed-in page | sign out                      |
| GET      /account                    | a signed-in page | your tokens                   |
| POST     /account/tokens             | a signed-in page | a new token (shown once)      |
| POST     /account/tokens/{id}/revoke | a signed-in page | revoke one                    |

Sign-in and sign-up attempts are limited per address (``RATE_SIGNIN_ADDRESS``); a wrong
password and an unknown name get the same answer, after the same time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from services.gateway import people as accounts
from services.gateway import sessions
from services.gateway.context import CTX, Context
from services.gateway.people import Person, Refused

FIELD_MAX = 2048


def add_routes(app: web.Application) -> None:
    app.router.add_get("/signin", signin_page)
    app.router.add_post("/signin", signin)
    app.router.add_get("/signup", signup_page)
    app.router.add_post("/signup", signup)
    app.router.add_post("/signout", signout)
    app.router.add_get("/account", account_page)
    app.router.add_post("/account/tokens", new_token)
    app.router.add_post("/account/tokens/{token}/revoke", revoke_token)


async def _page(
    request: web.Request, template: str, status: int = 200, **context: Any
) -> web.Response:
    who = await sessions.person(request) if "Authorization" not in request.headers else None
    context = {"person": who, "csrf": await sessions.csrf_token(request), **context}
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _fields(request: web.Request, *names: str) -> dict[str, str]:
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise web.HTTPUnsupportedMediaType(text="send the form (application/x-www-form-urlencoded)")
    try:
        form = await request.post()
    except (ValueError, AssertionError) as exc:  # aiohttp's form and multipart parsers
        raise web.HTTPBadRequest(text=f"malformed form: {exc}") from None
    out = {}
    for name in names:
        value = form.get(name, "")
        if not isinstance(value, str) or len(value) > FIELD_MAX:
            raise web.HTTPBadRequest(text=f"{name}: text of at most {FIELD_MAX} characters")
        out[name] = value
    return out


async def _hashing(ctx: Context, fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(ctx.hashing, fn, *args)


# --- signing in and out ------------------------------------------------------------------------


async def signin_page(request: web.Request) -> web.Response:
    return await _page(request, "accounts/signin.html", username="", error=None)


async def signin(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ctx.limits.check("signin", None, request)
    form = await _fields(request, "username", "password")
    username = form["username"].strip().lower()
    stored = ctx.people.password_hash(username)
    if not await _hashing(ctx, accounts.check_password, stored, form["password"]):
        return await _page(
            request,
            "accounts/signin.html",
            status=401,
            username=username[:64],
            error="Wrong user name or password.",
        )
    who = ctx.people.get(username)
    assert who is not None  # the password matched its hash
    await sessions.sign_in(request, who)
    raise web.HTTPSeeOther("/")


async def signup_page(request: web.Request) -> web.Response:
    return await _page(request, "accounts/signup.html", username="", name="", error=None)


async def signup(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    ctx.limits.check("signin", None, request)
    form = await _fields(request, "username", "name", "password")
    username, name = form["username"].strip().lower(), form["name"]
    try:
        accounts.valid_user_id(username)
        accounts.valid_password(form["password"])
        shown = accounts.display_name(name or username)
        if ctx.people.get(username) is not None:
            raise Refused(f"the user name {username!r} is taken")
        hashed = await _hashing(ctx, accounts.hash_password, form["password"])
        who = ctx.people.add(username, shown, hashed)
    except Refused as exc:
        status = 409 if "taken" in str(exc) else 400
        return await _page(
            request,
            "accounts/signup.html",
            status=status,
            username=username[:64],
            name=name[:80],
            error=str(exc),
        )
    await sessions.sign_in(request, who)
    raise web.HTTPSeeOther("/")


async def signout(request: web.Request) -> web.Response:
    await sessions.sign_out(request)
    raise web.HTTPSeeOther("/")


# --- tokens ----------------------------------------------------------------------------------


async def account_page(request: web.Request) -> web.Response:
    who = await sessions.need_signed_in(request)
    return await _account(request, who)


async def _account(
    request: web.Request,
    who: Person,
    status: int = 200,
    made: str | None = None,
    error: str | None = None,
) -> web.Response:
    ctx = request.app[CTX]
    return await _page(
        request,
        "accounts/account.html",
        status=status,
        tokens=ctx.people.tokens(who.id),
        made=made,
        error=error,
        public_url=ctx.public_url,
    )


async def new_token(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_signed_in(request)
    form = await _fields(request, "name")
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
    if not ctx.people.revoke(who.id, request.match_info["token"]):
        raise web.HTTPNotFound(text="no such token of yours")
    raise web.HTTPSeeOther("/account")
