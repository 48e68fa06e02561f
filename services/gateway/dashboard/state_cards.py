"""State cards: any service's retained state on the dashboard, drawn from its display hint.

A service says in its own ``topics.py`` how its retained ``state/...`` topic is shown
(``display=Display(...)``, ``dovecote.display``); the gateway subscribes to it (it imports
``services/contracts.py``, every service's contract) and sends it to pages like any state.
Here the hints become cards: the page gets each card's title and fields, and
``static/state_cards.js`` fills them from the retained frames, then live. No gateway or page
code names a service.

| method and path | what                                                    |
|-----------------|---------------------------------------------------------|
| GET /api/cards  | the cards a page draws: every display hint, as JSON     |
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

import services.contracts  # noqa: F401  (every service's topics.py: where its hint is)
from dovecote import topics


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/cards", cards)


def hints() -> list[dict[str, Any]]:
    """Every display hint of the registry, in topic order."""
    return [
        t.display.as_json(t.pattern, t.params) for t in topics.all_topics() if t.display is not None
    ]


async def cards(_: web.Request) -> web.Response:
    return web.json_response(hints())
