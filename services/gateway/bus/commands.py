"""Browser input to bus commands: a whitelist, each entry validating its own fields.

Nothing a browser sends reaches the bus except through ``parse``: an unknown command, an
unknown or mistyped field, or a body that is not a JSON object is a ``CommandError`` with a
reason, which the gateway answers with a 4xx or an error frame. The actor is always the
person asking (their session or token), never anything the body says.

| method and path        | who      | what                                          |
|------------------------|----------|-----------------------------------------------|
| POST /api/builds       | a person | start a build (`{"shouldFail": bool}`): 202   |
| POST /api/builds/stop  | a person | stop it (`{"id": build id}`, or the running)  |

A command that cannot work now is refused with the reason instead of being published
(``federation_status.py``): Stop with no build running, or Start while one runs, is a 409;
either with the builder known to be offline is a 503 with Retry-After. The websocket takes the same
commands as frames (``websocket.py``) and answers the same refusals as error frames.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from dovecote import activity as act
from dovecote.errors import BusError
from dovecote.topics import Topic
from services.gateway import topics as gateway_topics
from services.gateway.bus import federation_status, reachability
from services.gateway.context import CTX, Context
from services.gateway.web import sessions

# A command's activity from the body (its fields checked) and the person asking.
Make = Callable[[Mapping[str, Any], act.Actor], act.Activity]


class CommandError(ValueError):
    """Browser input that is not an acceptable command; ``str()`` is the reason."""


def _fields(body: Mapping[str, Any], allowed: dict[str, type]) -> dict[str, Any]:
    extra = set(body) - set(allowed) - {"command"}
    if extra:
        raise CommandError(f"unknown field(s): {', '.join(sorted(map(str, extra)))}")
    for name, kind in allowed.items():
        if name in body and not isinstance(body[name], kind):
            raise CommandError(f"{name} must be {kind.__name__}")
    return {k: body[k] for k in allowed if k in body}


def _start(body: Mapping[str, Any], actor: act.Actor) -> gateway_topics.StartBuild:
    f = _fields(body, {"shouldFail": bool})
    envelope = act.envelope()
    return gateway_topics.StartBuild(
        **envelope,
        type="Start",
        actor=actor,
        object=gateway_topics.BuildRequest(type="Build", shouldFail=f.get("shouldFail", False)),
        context=envelope["id"],  # the command starts its own piece of work
    )


def _stop(body: Mapping[str, Any], actor: act.Actor) -> gateway_topics.StopBuild:
    f = _fields(body, {"id": str})
    envelope = act.envelope()
    return gateway_topics.StopBuild(
        **envelope,
        type="Stop",
        actor=actor,
        object=gateway_topics.BuildRef(type="Build", id=f.get("id")),
        context=envelope["id"],
    )


COMMANDS: dict[str, tuple[Topic, Make]] = {
    "build.start": (gateway_topics.BUILD_START, _start),
    "build.stop": (gateway_topics.BUILD_STOP, _stop),
}


def parse(name: object, body: object, actor: act.Actor) -> tuple[Topic, act.Activity]:
    """The registry topic and the activity for one browser command."""
    if not isinstance(name, str) or name not in COMMANDS:
        raise CommandError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    if not isinstance(body, Mapping):
        raise CommandError("the command must be a JSON object")
    entry, make = COMMANDS[name]
    activity = make(body, actor)
    try:  # what a type does not say: an id that is no IRI, a field too long
        entry.codec.decode(act.encode(activity))
    except act.InvalidActivity as exc:
        raise CommandError(str(exc)) from None
    return entry, activity


def refusal(ctx: Context, name: str, activity: act.Activity) -> tuple[int, str] | None:
    """(HTTP status, reason) when the command cannot work now; None when it may go."""
    hub, root = ctx.hub, ctx.root
    if name == "build.start":
        why = federation_status.why_not_start(hub, root)
    elif isinstance(activity, gateway_topics.StopBuild):
        why = federation_status.why_not_stop(hub, root, activity.object.id)
    else:
        return None
    if why is None:
        return None
    return (503 if why == federation_status.offline_reason("builder") else 409), why


# --- over HTTP -------------------------------------------------------------------------------


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/builds", start_build)
    app.router.add_post("/api/builds/stop", stop_build)


async def json_body(request: web.Request) -> object:
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


async def _submit(request: web.Request, name: str) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_person(request)
    body = await json_body(request)
    try:
        entry, activity = parse(name, body, ctx.directory.actor(who))
    except CommandError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    refused = refusal(ctx, name, activity)
    if refused is not None:
        code, why = refused
        if code == 409:
            raise web.HTTPConflict(text=why)
        unavailable = web.HTTPServiceUnavailable(text=why)
        unavailable.headers["Retry-After"] = "10"
        raise unavailable
    ctx.limits.check("commands", who.id, request)
    try:
        ctx.publish(entry, activity)
    except BusError as exc:
        error = web.HTTPServiceUnavailable(text=f"cannot accept this now: {exc}")
        error.headers["Retry-After"] = "10"
        raise error from None
    answer = {"id": activity.id, "topic": f"{ctx.root}/{entry.pattern}"}
    return web.json_response({**answer, **reachability.queued(ctx.link)}, status=202)


async def start_build(request: web.Request) -> web.Response:
    return await _submit(request, "build.start")


async def stop_build(request: web.Request) -> web.Response:
    return await _submit(request, "build.stop")
