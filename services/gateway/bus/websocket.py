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
from services.gateway.context import CTX, Context
from services.gateway.web import sessions

MAX_FRAME_BYTES = 16 * 1024


def add_routes(app: web.Application) -> None:
    app.router.add_get("/ws", websocket)


def resume_point(request: web.Request) -> tuple[str, int] | None:
    """``?since=<seq>&epoch=<epoch>``: the last frame a page saw, or None for a newcomer."""
    since, epoch = request.query.get("since"), request.query.get("epoch")
    if since is None and epoch is None:
        return None
    if since is None or not epoch:
        raise web.HTTPBadRequest(text="send since and epoch together (docs/websocket.md)")
    if not since.isascii() or not since.isdigit() or len(since) > 18:
        raise web.HTTPBadRequest(
            text=f"since must be a frame's seq (a whole number): {since[:40]!r}"
        )
    return epoch[:64], int(since)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ctx = request.app[CTX]
    who = await sessions.person(request)  # None: signed out, public frames only
    resume = resume_point(request)
    ws = web.WebSocketResponse(compress=False, heartbeat=25, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    user = who.id if who else None
    try:
        client = ctx.hub.join(ws, request, user, sessions.credential(request))
    except ConnectionResetError:
        return ws
    ctx.hub.welcome(client, resume, root=ctx.root, user=user, bus=reachability.of(ctx.link))
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
