"""What the account forms share: rendering a page with its session's CSRF token, reading a
form's fields, and hashing passwords off the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from services.gateway.context import Context
from services.gateway.web import sessions

FIELD_MAX = 2048


async def page(
    request: web.Request,
    template: str,
    status: int = 200,
    retry_after: int | None = None,
    **context: Any,
) -> web.Response:
    who = await sessions.person(request) if "Authorization" not in request.headers else None
    context = {"person": who, "csrf": await sessions.csrf_token(request), **context}
    response = aiohttp_jinja2.render_template(template, request, context, status=status)
    response.headers["Cache-Control"] = "no-store"
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def fields(request: web.Request, *names: str) -> dict[str, str]:
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


async def hashing(ctx: Context, fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(ctx.hashing, fn, *args)
