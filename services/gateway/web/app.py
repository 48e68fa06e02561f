"""The gateway's HTTP side, assembled: the edge's middlewares, then one module per feature.

Each feature module has its own routes (``add_routes``) and templates
(``templates/<feature>/``); none of them is here. The order of the middlewares matters:

1. ``edge.security_headers``: outermost, so every answer carries them, refusals included;
2. ``outages.store_unavailable``: a store out of reach, wherever it was needed (the session,
   the edge, a feature), is a 503 with Retry-After;
3. the session (aiohttp-session, ``sessions.py``): the cookie, read when someone asks;
4. ``edge.guard``: Host, Origin and CSRF, before any feature sees the request.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from services.gateway.accounts import account_page, entry_pages
from services.gateway.accounts.signins import describe_agent
from services.gateway.bus import commands, reachability, websocket
from services.gateway.context import CTX, Context
from services.gateway.dashboard import dashboard_page, state_cards
from services.gateway.images import image_api, photos_page
from services.gateway.operations import operations_page, prometheus
from services.gateway.social import directory, follows, inbox_view
from services.gateway.web import edge, lifecycle, outages, sessions

HERE = Path(__file__).parent.parent  # the gateway's folder: templates/ and static/
MAX_REQUEST_BYTES = 16 * 1024  # bodies read whole (commands, forms); uploads stream
FEATURES = (
    dashboard_page,
    websocket,
    commands,
    image_api,
    photos_page,
    state_cards,
    entry_pages,
    account_page,
    follows,
    inbox_view,
    directory,
)
FOR_OPERATORS = (operations_page, prometheus)  # health, dead letters, traces, /metrics


def create_app(ctx: Context) -> web.Application:
    """The app, owning ``ctx``: its sockets, threads and accounts store close with the app
    (``lifecycle.py``), when its runner is cleaned up."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[CTX] = ctx
    lifecycle.own_context(app)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),  # every activity field is text
        filters={"agent": describe_agent},
    )
    # Every page's banner (base.html) while this gateway cannot reach the bus.
    link = ctx.link
    aiohttp_jinja2.get_env(app).globals["bus_banner"] = lambda: (
        None if link.up else reachability.headline(link)
    )
    rules = edge.Edge(ctx.public_url)
    app.middlewares.extend(
        [
            edge.security_headers,
            outages.store_unavailable,
            sessions.middleware(
                ctx.session_key, ctx.session_max_age, secure=rules.origin[0] == "https"
            ),
            edge.guard(rules),
        ]
    )
    for feature in (*FEATURES, *FOR_OPERATORS):
        feature.add_routes(app)
    app.router.add_static("/static", HERE / "static", name="static", append_version=True)
    return app
