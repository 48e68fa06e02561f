"""The websocket, ``GET /ws``: the bus pushed to a page, and commands from it (docs/websocket.md).

Who the socket is for comes from the session cookie (or a token): a signed-in person's
socket gets the frames for everyone and that person's own notifications, now and on a
replay; a signed-out one gets the frames for everyone only, and may send no command. The
hub (``hub.py``) does the fan-out; this module only opens, identifies and listens.

Once the request is answered the connection leaves aiohttp (``upgrade.py``) for our own
protocol (``browser_socket.py``), and the handler returns: an open socket holds no request,
task or coroutine, only its transport, its ``BrowserSocket``, its ``Page`` and the hub's
``Client`` (docs/performance.md has what each costs).
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from dovecote.errors import BusError
from services.gateway.accounts.credentials import Person
from services.gateway.bus import commands, reachability, upgrade
from services.gateway.bus.browser_socket import MAX_MESSAGE, BrowserSocket, Heartbeat
from services.gateway.bus.hub import Client, notice
from services.gateway.bus.replay import CURSOR_KEYS, KEY_CHARS
from services.gateway.context import CTX, Context
from services.gateway.web import sessions

log = logging.getLogger("dovecote.gateway.websocket")
MAX_FRAME_BYTES = MAX_MESSAGE  # 16 KiB: a larger message from a page closes its socket (1009)
HEARTBEAT = web.AppKey("heartbeat", Heartbeat)  # the pings of every socket of the app
HEAR_WAIT = 1.0  # seconds a resuming page may wait for this gateway to hear its last frames


def add_routes(app: web.Application) -> None:
    app[HEARTBEAT] = Heartbeat()
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


async def websocket(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    who = await sessions.person(request)  # None: signed out, public frames only
    resume = resume_point(request)
    accept = upgrade.accept_key(request)
    if resume:  # from another gateway a moment ago, it may have seen frames still on the way
        await ctx.hub.heard(resume, who.id if who else None, HEAR_WAIT)
    page = Page(ctx, who, request.remote)
    socket = BrowserSocket(request.app[HEARTBEAT], page)
    try:
        await upgrade.take_over(request, socket)
    except ConnectionResetError:
        return upgrade.Upgraded()
    transport = socket.transport
    if socket.closed or transport is None:  # the browser left while its connection moved
        return upgrade.Upgraded()
    transport.write(upgrade.switching(accept))
    user = who.id if who else None
    try:
        page.client = ctx.hub.join(socket, user, sessions.credential(request))
        ctx.hub.welcome(
            page.client, resume, root=ctx.root, user=user, bus=reachability.of(ctx.link)
        )
    except Exception:  # not re-raised: aiohttp would answer 500 on the connection now ours
        log.exception("a socket could not join the hub")
        transport.abort()
    return upgrade.Upgraded()


class Page:
    """What a page's frames do: its commands, answered on its socket; its socket's end."""

    __slots__ = ("address", "client", "ctx", "who")

    def __init__(self, ctx: Context, who: Person | None, address: str | None) -> None:
        self.ctx, self.who, self.address = ctx, who, address
        self.client: Client | None = None  # once it joined the hub

    def text(self, text: str) -> None:
        if self.client is not None:
            self.client.push(command_frame(self.ctx, self.who, text, self.address))

    def binary(self, data: bytes) -> None:
        if self.client is not None:
            self.client.push(notice("error", error="binary frames are not accepted"))

    def closed(self) -> None:
        if self.client is not None:
            self.ctx.hub.leave(self.client)
            self.client = None


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
