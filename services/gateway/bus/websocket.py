"""The websocket, ``GET /ws``: the bus pushed to a page, and commands from it (docs/websocket.md).

Who the socket is for comes from the session cookie (or a token): a signed-in person's
socket gets the frames for everyone and that person's own notifications, now and on a
replay; a signed-out one gets the frames for everyone only, and may send no command. The
hub (``hub.py``) does the fan-out; this module only opens, identifies and listens.
"""

from __future__ import annotations

import orjson
from aiohttp import WSMsgType, web

from dovecote.errors import BusError
from services.gateway.accounts.credentials import Person
from services.gateway.bus import commands, reachability
from services.gateway.bus.hub import notice
from services.gateway.bus.replay import CURSOR_KEYS, KEY_CHARS
from services.gateway.context import CTX, Context
from services.gateway.web import sessions

MAX_FRAME_BYTES = 16 * 1024
HEAR_WAIT = 1.0  # seconds a resuming page may wait for this gateway to hear its last frames


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws", websocket)


def resume_point(request: web.Request) -> list[str] | None:
    """``?after=<key>.<key>…``: the keys of the last frames a page applied (its cursor), on
    this gateway or another; None for a newcomer. A cursor of the former kind
    (``?since=&epoch=``, one gateway process's numbers) names no frame: it cannot resume."""
    after = request.query.get("after")
    if after is None:
        return [] if "since" in request.query or "epoch" in request.query else None
    keys = after.split(".") if after else []
    if len(keys) > CURSOR_KEYS or not all(len(k) == KEY_CHARS and is_hex(k) for k in keys):
        raise web.HTTPBadRequest(
            text=f"after must be up to {CURSOR_KEYS} frame keys ({KEY_CHARS} hex digits each) "
            f"joined by '.': {after[:40]!r} (docs/websocket.md)"
        )
    return keys


def is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ctx = request.app[CTX]
    who = await sessions.person(request)  # None: signed out, public frames only
    cursor = resume_point(request)
    if cursor:  # from another gateway a moment ago, it may have seen frames still on the way
        await ctx.hub.heard(cursor, who.id if who else None, HEAR_WAIT)
    ws = web.WebSocketResponse(compress=False, heartbeat=25, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    user = who.id if who else None
    try:
        client = ctx.hub.join(ws, request, user, sessions.credential(request))
    except ConnectionResetError:
        return ws
    ctx.hub.welcome(client, cursor, root=ctx.root, user=user, bus=reachability.of(ctx.link))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                client.push(command_frame(ctx, who, msg.data, request.remote))
            elif msg.type == WSMsgType.BINARY:
                client.push(notice("error", error="binary frames are not accepted"))
    finally:
        ctx.hub.leave(client)
    return ws


def command_frame(ctx: Context, who: Person | None, text: str, address: str | None) -> bytes:
    """The answer to one frame a page sent: ``accepted`` or ``error`` with the reason."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return notice("error", error=f"malformed JSON: {exc}")
    name = body.get("command") if isinstance(body, dict) else None
    if who is None:
        return notice("error", error="sign in to send commands")
    try:
        entry, activity = commands.parse(name, body, ctx.directory.actor(who))
    except commands.CommandError as exc:
        return notice("error", error=str(exc))
    refused = commands.refusal(ctx, str(name), activity)
    if refused is not None:
        return notice("error", error=refused[1], status=refused[0], command=name)
    wait = ctx.limits.retry_after("commands", who.id, address)
    if wait:
        return notice("error", error=f"too many commands: try again in {wait} s", retryAfter=wait)
    try:
        ctx.publish(entry, activity)
    except BusError as exc:
        return notice("error", error=f"cannot accept this now: {exc}")
    return notice("accepted", id=activity.id, command=name, **reachability.queued(ctx.link))
