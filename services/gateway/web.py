"""The gateway's HTTP side: dashboard page, websocket, commands and the user directory."""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, cast

import aiohttp_jinja2
import jinja2
import orjson
from aiohttp import WSMsgType, web

from dovecote.mqtt import BusError
from services.gateway import commands, gallery
from services.gateway.context import CTX, USER_COOKIE, Context, current_user, same_origin
from services.gateway.hub import notice
from services.gateway.users import User

log = logging.getLogger("dovecote.gateway.web")
HERE = Path(__file__).parent
MAX_COMMAND_BYTES = 16 * 1024


def create_app(ctx: Context) -> web.Application:
    app = web.Application(client_max_size=MAX_COMMAND_BYTES)
    app[CTX] = ctx
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),  # every activity field is text
    )
    app.router.add_get("/", dashboard)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/healthz", health)
    app.router.add_get("/api/state", state)
    app.router.add_post("/api/builds", start_build)
    app.router.add_post("/api/builds/stop", stop_build)
    app.router.add_get("/users", list_users)
    app.router.add_get("/users/{user}", get_user)
    app.router.add_get("/users/{user}/followers", get_followers)
    app.router.add_get("/users/{user}/avatar.svg", get_avatar)
    gallery.add_routes(app)
    app.router.add_static("/static", HERE / "static", name="static", append_version=True)
    app.middlewares.append(security_headers)
    return app


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        # connect-src 'self' covers the page's own ws:/wss: origin (CSP 3): no other host
        "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
        # style attributes only for the server-rendered progress width (no <style>, no JS)
        "style-src 'self'; style-src-attr 'unsafe-inline'; script-src 'self'; "
        "frame-ancestors 'none'"
    ),
}


@web.middleware
def security_headers(request: web.Request, handler: Any) -> Awaitable[web.StreamResponse]:
    if request.path == "/ws" and request.headers.get("Upgrade", "").lower() == "websocket":
        # A socket's headers left with the upgrade; skipping saves a frame held per socket.
        return cast(Awaitable[web.StreamResponse], handler(request))
    return _with_security_headers(request, handler)


async def _with_security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every answer carries them, errors too: a 404 or a 500 page is a page as well."""
    try:
        resource = request.match_info.route.resource
        if resource is not None and resource.name == "static":
            _check_static(request.match_info.get("filename", ""))
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        _add_security_headers(exc.headers)
        raise
    except ConnectionError:
        raise  # the client went away mid-request: no one to answer, nothing to log
    except Exception as exc:
        # aiohttp's own 500 (504) page would go out without them: answer it here instead.
        log.exception("error handling %s %s", request.method, request.path)
        error: web.HTTPException = (
            web.HTTPGatewayTimeout(text="timed out: see the gateway's log")
            if isinstance(exc, TimeoutError)
            else web.HTTPInternalServerError(text="internal error: see the gateway's log")
        )
        _add_security_headers(error.headers)
        raise error from None
    _add_security_headers(response.headers)
    return response


def _add_security_headers(headers: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)


def _check_static(filename: str) -> None:
    """aiohttp answers a missing static file with a bare 404, no body (found by the fuzz
    run): every refusal of the gateway says why."""
    folder = (HERE / "static").resolve()
    try:
        path = (folder / filename).resolve()
        found = path.is_relative_to(folder) and path.is_file()
    except (OSError, ValueError):  # a name the file system refuses (NUL, too long)
        found = False
    if not found:
        raise web.HTTPNotFound(text=f"no such file: /static/{filename[:100]}")


def snapshot(ctx: Context) -> list[Any]:
    return [orjson.loads(frame) for frame in ctx.hub.snapshot()]


async def dashboard(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    user = current_user(request)
    frames = snapshot(ctx)
    ring = ctx.hub.ring  # read with the snapshot (no await between): the page resumes here
    build = next(
        (f["activity"]["object"] for f in frames if f["topic"] == f"{ctx.root}/state/build"),
        None,
    )
    response = aiohttp_jinja2.render_template(
        "dashboard.html",
        request,
        {
            "user": user,
            "users": list(ctx.directory.users.values()),
            "build": build,
            "snapshot": frames,
            "root": ctx.root,
            "epoch": ring.epoch,
            "seq": ring.seq,
            "gallery": gallery.recent(ctx.images),
        },
    )
    if request.query.get("as") in ctx.directory.users:
        response.set_cookie(USER_COOKIE, user.id, samesite="Strict", httponly=True)
    return response


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "sockets": len(request.app[CTX].hub.clients)})


async def state(request: web.Request) -> web.Response:
    return web.json_response(snapshot(request.app[CTX]), dumps=_dumps)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- commands ------------------------------------------------------------------------------


async def _json_body(request: web.Request) -> object:
    if request.content_type != "application/json":
        # Also what keeps cross-site HTML forms out: they cannot send application/json.
        raise web.HTTPUnsupportedMediaType(text="send Content-Type: application/json")
    raw = await request.read()
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"malformed JSON: {exc}") from None


def _submit(request: web.Request, name: str, body: object) -> web.Response:
    ctx = request.app[CTX]
    user = current_user(request)
    try:
        entry, activity = commands.parse(name, body, ctx.directory.actor(user))
    except commands.CommandError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    try:
        ctx.publish(entry, activity)
    except BusError as exc:
        raise gallery.unavailable(exc) from None
    return web.json_response(
        {"id": activity["id"], "topic": f"{ctx.root}/{entry.pattern}"}, status=202
    )


async def start_build(request: web.Request) -> web.Response:
    return _submit(request, "build.start", await _json_body(request))


async def stop_build(request: web.Request) -> web.Response:
    return _submit(request, "build.stop", await _json_body(request))


# --- the websocket -------------------------------------------------------------------------


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
    if not same_origin(request):
        raise web.HTTPForbidden(text="cross-origin websocket refused")
    user = current_user(request)
    resume = resume_point(request)
    ws = web.WebSocketResponse(compress=False, heartbeat=25, max_msg_size=MAX_COMMAND_BYTES)
    await ws.prepare(request)
    try:
        client = ctx.hub.join(ws, request, user.id)
    except ConnectionResetError:
        return ws
    ctx.hub.welcome(client, resume, root=ctx.root, user=user.id)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                client.push(_command_frame(ctx, user, msg.data))
            elif msg.type == WSMsgType.BINARY:
                client.push(notice("error", error="binary frames are not accepted"))
    finally:
        ctx.hub.leave(client)
    return ws


def _command_frame(ctx: Context, user: User, text: str) -> bytes:
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return notice("error", error=f"malformed JSON: {exc}")
    name = body.get("command") if isinstance(body, dict) else None
    try:
        entry, activity = commands.parse(name, body, ctx.directory.actor(user))
    except commands.CommandError as exc:
        return notice("error", error=str(exc))
    try:
        ctx.publish(entry, activity)
    except BusError as exc:
        return notice("error", error=f"cannot accept this now: {exc}")
    return notice("accepted", id=activity["id"], command=name)


# --- the user directory ----------------------------------------------------------------------


def _user(request: web.Request) -> User:
    user = request.app[CTX].directory.users.get(request.match_info["user"])
    if user is None:
        raise web.HTTPNotFound(text="no such user")
    return user


AS_JSON = "application/activity+json"


async def list_users(request: web.Request) -> web.Response:
    d = request.app[CTX].directory
    body = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "type": "Collection",
        "totalItems": len(d.users),
        "items": [d.actor(u) for u in d.users.values()],
    }
    return web.Response(body=orjson.dumps(body), content_type=AS_JSON)


async def get_user(request: web.Request) -> web.Response:
    d = request.app[CTX].directory
    return web.Response(body=orjson.dumps(d.person(_user(request))), content_type=AS_JSON)


async def get_followers(request: web.Request) -> web.Response:
    d = request.app[CTX].directory
    user = _user(request)
    followers = d.followers(user)
    body = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{d.url(user.id)}/followers",
        "type": "Collection",
        "totalItems": len(followers),
        "items": [d.actor(f) for f in followers],
    }
    return web.Response(body=orjson.dumps(body), content_type=AS_JSON)


async def get_avatar(request: web.Request) -> web.Response:
    user = _user(request)
    initials = html.escape("".join(w[0] for w in user.name.split()[:2]).upper())
    hue = sum(map(ord, user.id)) * 47 % 360
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        f'<circle cx="32" cy="32" r="32" fill="hsl({hue},55%,45%)"/>'
        '<text x="32" y="41" font-family="sans-serif" font-size="24" fill="#fff" '
        f'text-anchor="middle">{initials}</text></svg>'
    )
    return web.Response(
        text=svg, content_type="image/svg+xml", headers={"Cache-Control": "max-age=3600"}
    )
