"""The dashboard page and what it is drawn from: retained state, the gallery, the inbox,
the last events on the bus (so a reload keeps the feed), and why a control is unavailable.

| method and path | what                                                            |
|-----------------|-----------------------------------------------------------------|
| GET /           | the page, server-rendered (with the signed-in person's inbox)   |
| GET /api/state  | the retained frames a page starts from (JSON)                   |
| GET /healthz    | 200 while the bus is reachable, else 503 and why (any Host)     |
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp_jinja2
import orjson
from aiohttp import web

from services.gateway.accounts.credentials import Person
from services.gateway.bus import federation_status, reachability
from services.gateway.context import CTX, Context
from services.gateway.dashboard import state_cards
from services.gateway.images import image_api, photos_page
from services.gateway.social import follows, inbox_view
from services.gateway.web import sessions


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", dashboard)
    app.router.add_get("/healthz", health)
    app.router.add_get("/api/state", state)


def snapshot(ctx: Context) -> list[Any]:
    return [orjson.loads(frame) for frame in ctx.hub.snapshot()]


async def dashboard(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.person(request)
    csrf = await sessions.csrf_token(request)
    frames = snapshot(ctx)
    ring = ctx.hub.ring  # read with the snapshot (no await between): the page resumes here
    after, seq = ring.recent(who.id if who else None), ring.seq
    feed = [orjson.loads(frame) for frame in ctx.feed]  # the same moment: no frame twice
    why = reasons(ctx, who)
    build = next(
        (f["activity"]["object"] for f in frames if f["topic"] == f"{ctx.root}/state/build"),
        None,
    )
    # Asked after the resume point was read: a notification that arrives meanwhile may be
    # both in the inbox and replayed on the socket; the page shows each id once.
    # Cut off from the bus, no answer can come: the page says why without waiting for it.
    box = await ctx.inbox.fetch(ctx.directory.actor(who)) if who and ctx.link.up else None
    pool = ctx.images.pool if ctx.images is not None else None  # the disk or the database
    found, more = await asyncio.get_running_loop().run_in_executor(
        pool, image_api.page, ctx.images, None
    )
    response = aiohttp_jinja2.render_template(
        "dashboard.html",
        request,
        {
            "person": who,
            "csrf": csrf,
            "build": build,
            "snapshot": frames,
            "root": ctx.root,
            "after": ".".join(after),
            "seq": seq,
            "tiles": [photos_page.tile(image) for image in found],
            "older": image_api.image_id_of(found[-1]) if more and found else None,
            "waiting": photos_page.resizer_status(ctx),
            "cards": state_cards.hints(),
            "feed": feed,
            "why": why,
            "inbox": box,
            "notes": inbox_view.items(box) if box else [],
            "people": follows.people_to_show(ctx, who),
        },
    )
    response.headers["Cache-Control"] = "no-store"  # a person's own page
    return response


def reasons(ctx: Context, who: Person | None) -> dict[str, str | None]:
    """Why Start and Stop cannot be pressed now (None: they can), as the page says it."""
    if who is None:
        signed_out = "sign in to start or stop builds"
        return {"start": signed_out, "stop": signed_out}
    return {
        "start": federation_status.why_not_start(ctx.hub, ctx.root),
        "stop": federation_status.why_not_stop(ctx.hub, ctx.root),
    }


async def health(request: web.Request) -> web.Response:
    """200 while this gateway can reach the bus; 503 (with why) while it cannot: it would
    serve pages that do not move and keep what people send in its outbox, so a load
    balancer should send them to a gateway that can (issue 22)."""
    ctx = request.app[CTX]
    body = {"ok": ctx.link.up, "sockets": len(ctx.hub.clients), "bus": reachability.of(ctx.link)}
    if not ctx.link.up:
        body["why"] = reachability.headline(ctx.link)
    return web.json_response(body, status=200 if ctx.link.up else 503)


async def state(request: web.Request) -> web.Response:
    body = orjson.dumps(snapshot(request.app[CTX]))
    return web.Response(body=body, content_type="application/json")
