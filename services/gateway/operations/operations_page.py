"""The operations page: the federation's health, its dead letters, one activity's trace.

For operators only (``toolkit.py``). The page draws its charts itself (SVG, no library)
from ``/api/operations``, which it asks again at every report interval: per service and
worker, messages a second, p50/p99 handler latency and lag over the last minutes, and the
totals (parked, retries, skipped, reconnects, outbox, the gateway's sockets). Dead letters
are asked of the deadletters service on the bus, as ``dovecote deadletter`` does, in the
operator's name; a trace comes from the gateway's own index (``traces.py``).

| method and path              | who                   | what                               |
|------------------------------|-----------------------|------------------------------------|
| GET  /operations             | an operator's browser | the page (``?trace=<context>``)    |
| GET  /api/operations         | an operator           | every worker's totals and series   |
| GET  /api/trace/{context}    | an operator           | one trace (or the start of an id)  |
| GET  /api/deadletters        | an operator           | letters held (``?service=&limit=``)|
| POST /api/deadletters/replay | an operator           | ``{"items": [ids]}``, or           |
|                              |                       | ``{"all": true, "service": s}``    |
"""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
import msgspec
import orjson
from aiohttp import web

from dovecote import activity as act
from dovecote import topics
from dovecote.topics import P, Topic
from services.gateway.accounts.credentials import Person
from services.gateway.context import CTX
from services.gateway.web import sessions

LIST_LIMIT = 200  # letters the page lists


def add_routes(app: web.Application) -> None:
    # The header's link (base.html) for those who may follow it.
    aiohttp_jinja2.get_env(app).globals["is_operator"] = app[CTX].operations.is_operator
    app.router.add_get("/operations", page)
    app.router.add_get("/api/operations", overview)
    app.router.add_get("/api/trace/{context}", trace)
    app.router.add_get("/api/deadletters", letters)
    app.router.add_post("/api/deadletters/replay", replay)


async def need_operator(request: web.Request) -> Person:
    who = await sessions.need_person(request)
    if not request.app[CTX].operations.is_operator(who):
        raise web.HTTPForbidden(text=f"{who.id} is not an operator")
    return who


def _json(body: Any, status: int = 200) -> web.Response:
    response = web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _view(request: web.Request) -> dict[str, Any]:
    ops = request.app[CTX].operations
    return {**ops.fleet.view(), "traces": ops.traces.recent()}


async def page(request: web.Request) -> web.Response:
    who = await sessions.need_signed_in(request)
    if not request.app[CTX].operations.is_operator(who):
        raise web.HTTPForbidden(text=f"the operations page is for operators: {who.id} is not one")
    response = aiohttp_jinja2.render_template(
        "operations/page.html",
        request,
        {
            "person": who,
            "csrf": await sessions.csrf_token(request),
            "view": _view(request),
            "trace": request.query.get("trace", "")[:200],
        },
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def overview(request: web.Request) -> web.Response:
    await need_operator(request)
    return _json(_view(request))


async def trace(request: web.Request) -> web.Response:
    await need_operator(request)
    query = request.match_info["context"].strip()[:200]
    found = request.app[CTX].operations.traces.find(query)
    if found.context is None:
        many = found.candidates
        reason = (
            f"{len(many)} correlation ids start with {query!r}: give more of it"
            if many
            else f"no activity with the correlation id {query!r} in the gateway's index"
        )
        return _json({"error": reason, "candidates": many}, status=404)
    return _json(act.to_json(found))


# --- dead letters: asked of the deadletters service, in the operator's name ----------------


async def letters(request: web.Request) -> web.Response:
    who = await need_operator(request)
    limit = LIST_LIMIT
    if "limit" in request.query:
        raw = request.query["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise web.HTTPBadRequest(text=f"limit must be 1-1000, got {raw[:20]!r}")
        limit = int(raw)
    service = request.query.get("service", "").strip()[:200] or None
    command = act.ListDeadLetters(
        **act.envelope(),
        type="View",
        actor=request.app[CTX].directory.actor(who),
        object=act.LetterQuery(type="Collection", service=service, limit=limit),
    )
    return await _ask(request, topics.DEADLETTER_LIST, command)


async def replay(request: web.Request) -> web.Response:
    who = await need_operator(request)
    request.app[CTX].limits.check("commands", who.id, request)
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send Content-Type: application/json")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"malformed JSON: {exc}") from None
    if not isinstance(body, dict) or set(body) - {"items", "all", "service"}:
        raise web.HTTPBadRequest(text='send {"items": [letter ids]} or {"all": true, "service": s}')
    try:
        selection = msgspec.convert({**body, "type": "Collection"}, act.LetterSelection)
    except msgspec.ValidationError as exc:
        raise web.HTTPBadRequest(text=f"not a valid selection of letters: {exc}") from None
    envelope = act.envelope()
    command = act.ReplayDeadLetters(
        **envelope,
        type="Undo",
        actor=request.app[CTX].directory.actor(who),
        object=selection,
        context=envelope["id"],  # followed through every service's log (a list is not)
    )
    return await _ask(request, topics.DEADLETTER_REPLAY, command)


async def _ask(request: web.Request, entry: Topic[P], command: P) -> web.Response:
    ctx = request.app[CTX]
    try:  # what a type does not say: a service name or an id too long
        entry.codec.decode(act.encode(command))
    except act.InvalidActivity as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    answer = await ctx.operations.questions.ask(entry, command)
    if answer is None:
        error = web.HTTPServiceUnavailable(
            text="the deadletters service did not answer: is it running?"
        )
        error.headers["Retry-After"] = "5"
        raise error
    return _json(orjson.loads(answer)["object"])
