"""A person's inbox, as the gateway shows it: the notifier keeps it, the gateway asks.

The notifier owns notifications: it stores the last ``INBOX_SIZE`` of each person with an
unread count. The gateway holds none of it; for a page (or ``GET /api/inbox``) it asks on
the bus (``commands/notifier/inbox``, a ``View`` in the person's name) and waits for the
answer on ``replies/notifier/<request>``, which every gateway worker subscribes to and the
one that asked takes. A notifier that does not answer within ``INBOX_TIMEOUT`` seconds
leaves the page without its inbox (it says so); live notifications still arrive.

"Mark all read" publishes a ``Read`` up to the newest notification the page showed; the
notifier marks them and publishes the counts on ``users/<person>/inbox``, which the gateway
sends to that person's sockets: every page of theirs clears its badge.

| method and path        | who      | what                                         |
|------------------------|----------|----------------------------------------------|
| GET  /api/inbox        | a person | the inbox (JSON): unread, notifications      |
| POST /api/inbox/read   | a person | mark read (`{"upTo": id}`, or all): 202      |
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from dovecote import activity as act
from dovecote.errors import BusError
from services.gateway import topics as gateway_topics
from services.gateway.bus import reachability
from services.gateway.context import CTX
from services.gateway.web import sessions


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/inbox", get_inbox)
    app.router.add_post("/api/inbox/read", mark_read)


async def get_inbox(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_person(request)
    if not ctx.link.up:  # no answer can come: say why at once, not after INBOX_TIMEOUT
        error = web.HTTPServiceUnavailable(text=reachability.headline(ctx.link))
        error.headers["Retry-After"] = "5"
        raise error
    inbox = await ctx.inbox.fetch(ctx.directory.actor(who))
    if inbox is None:
        error = web.HTTPServiceUnavailable(text="the notifier did not answer: try again")
        error.headers["Retry-After"] = "5"
        raise error
    return web.Response(body=orjson.dumps(inbox), content_type="application/json")


async def mark_read(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_person(request)
    ctx.limits.check("commands", who.id, request)
    up_to = await _up_to(request)
    read = gateway_topics.ReadInbox(
        **act.envelope(),
        type="Read",
        actor=ctx.directory.actor(who),
        object=gateway_topics.InboxMark(type="OrderedCollection", upTo=up_to),
    )
    try:
        gateway_topics.INBOX_READ.codec.decode(act.encode(read))
    except act.InvalidActivity as exc:
        raise web.HTTPBadRequest(text=f"upTo must be a notification's id: {exc}") from None
    try:
        ctx.publish(gateway_topics.INBOX_READ, read)
    except BusError as exc:
        error = web.HTTPServiceUnavailable(text=f"cannot accept this now: {exc}")
        error.headers["Retry-After"] = "10"
        raise error from None
    return web.json_response({"id": read.id, **reachability.queued(ctx.link)}, status=202)


async def _up_to(request: web.Request) -> str | None:
    if request.content_type == "application/json":
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise web.HTTPBadRequest(text=f"malformed JSON: {exc}") from None
        if not isinstance(body, dict) or set(body) - {"upTo"}:
            raise web.HTTPBadRequest(text='send {"upTo": "<notification id>"} or {}')
        value = body.get("upTo")
    elif request.content_type == "application/x-www-form-urlencoded":
        value = (await request.post()).get("upTo") or None
    elif request.body_exists:
        raise web.HTTPUnsupportedMediaType(text="send Content-Type: application/json")
    else:
        value = None
    if value is not None and not isinstance(value, str):
        raise web.HTTPBadRequest(text="upTo must be a notification's id (a string)")
    return value


# --- what a page shows of a notification -----------------------------------------------------


def item(note: dict[str, Any], unread: bool) -> dict[str, Any]:
    """One notification as the page's template shows it (the script builds the same)."""
    about = note.get("object") or {}
    obj = about.get("object") or {}
    kinds = {"Image": "photo", "Build": f"build-{obj.get('state', '')}"}
    kind = kinds.get(str(obj.get("type")))
    if about.get("type") == "Follow":
        kind = "follow"
    href = _local_image(obj.get("url")) if obj.get("type") == "Image" else None
    return {
        "id": note.get("id", ""),
        "kind": kind or "other",
        "icon": {"photo": "▣", "follow": "★"}.get(kind or "", "⚙"),
        "text": note.get("summary") or f"{about.get('type', 'Something')} happened",
        "published": note.get("published", ""),
        "time": _hhmm(note.get("published", "")),
        "href": href,
        "unread": unread,
    }


def items(inbox: dict[str, Any]) -> list[dict[str, Any]]:
    unread = int(inbox.get("unread", 0))
    notes = inbox.get("orderedItems") or []
    return [item(n, i < unread) for i, n in enumerate(notes)]


def _local_image(url: Any) -> str | None:
    """Images are this gateway's: a path, whatever host name PUBLIC_URL uses."""
    path = urlsplit(url).path if isinstance(url, str) else ""
    return path if path.startswith("/images/") else None


def _hhmm(published: str) -> str:
    try:
        return datetime.fromisoformat(published).strftime("%H:%M")
    except ValueError:
        return ""
