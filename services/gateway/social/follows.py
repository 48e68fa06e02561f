"""Following people, from the page or a script: stored, then published as AS2.

The follow is written to the accounts first, so the notifier's next GET of the followers
counts it (a follow made a second ago, as before); then a ``Follow`` (or an ``Undo`` of it)
goes on ``events/people/followed`` (``unfollowed``) through the outbox. When the outbox is
full the change is taken back and the answer is 503: nothing half-done.

| method and path               | who      | what                                      |
|-------------------------------|----------|-------------------------------------------|
| PUT    /api/following/{user}  | a person | follow them (200; nothing new if already) |
| DELETE /api/following/{user}  | a person | unfollow them                             |

Who follows whom is public, as in the directory (``/users/{user}/followers``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from dovecote import activity as act
from dovecote.errors import BusError
from dovecote.topics import P, Topic
from services.gateway import topics as gateway_topics
from services.gateway.accounts.credentials import Person, Refused
from services.gateway.bus import reachability
from services.gateway.context import CTX, Context
from services.gateway.web import sessions

PEOPLE_SHOWN = 50  # people the page lists to follow


def add_routes(app: web.Application) -> None:
    app.router.add_put("/api/following/{user}", follow)
    app.router.add_delete("/api/following/{user}", unfollow)


def _other(ctx: Context, request: web.Request) -> Person:
    found = ctx.people.get(request.match_info["user"])
    if found is None:
        raise web.HTTPNotFound(text="no such person")
    return found


async def follow(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_person(request)
    other = _other(ctx, request)
    ctx.limits.check("commands", who.id, request)
    try:
        changed = ctx.people.follow(who.id, other.id)
    except Refused as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    activity = None
    if changed:
        activity = gateway_topics.Followed(
            **act.envelope(),
            type="Follow",
            actor=ctx.directory.actor(who),
            object=ctx.directory.actor(other),
        )
        _announce(
            ctx,
            gateway_topics.PERSON_FOLLOWED,
            activity,
            undo=lambda: ctx.people.unfollow(who.id, other.id),
        )
    return _answer(ctx, other, True, activity)


async def unfollow(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    who = await sessions.need_person(request)
    other = _other(ctx, request)
    ctx.limits.check("commands", who.id, request)
    changed = ctx.people.unfollow(who.id, other.id)
    activity = None
    if changed:
        taken_back = gateway_topics.FollowRef(
            type="Follow", actor=ctx.directory.actor(who), object=ctx.directory.actor(other)
        )
        activity = gateway_topics.Unfollowed(
            **act.envelope(), type="Undo", actor=ctx.directory.actor(who), object=taken_back
        )
        _announce(
            ctx,
            gateway_topics.PERSON_UNFOLLOWED,
            activity,
            undo=lambda: ctx.people.follow(who.id, other.id),
        )
    return _answer(ctx, other, False, activity)


def _announce(ctx: Context, entry: Topic[P], activity: P, undo: Callable[[], object]) -> None:
    try:
        ctx.publish(entry, activity)
    except BusError as exc:
        undo()
        error = web.HTTPServiceUnavailable(text=f"cannot accept this now: {exc}")
        error.headers["Retry-After"] = "10"
        raise error from None


def _answer(
    ctx: Context, other: Person, following: bool, activity: act.Activity | None
) -> web.Response:
    body: dict[str, Any] = {"person": other.id, "following": following, "changed": bool(activity)}
    if activity is not None:
        body["activity"] = activity.id
        body.update(reachability.queued(ctx.link))
    return web.json_response(body)


def people_to_show(ctx: Context, me: Person | None) -> list[dict[str, Any]]:
    """The people card: everyone (up to a bound), whether I follow them, and me marked."""
    following = {p.id for p in ctx.people.following(me.id)} if me else set()
    return [
        {
            "id": p.id,
            "name": p.name,
            "me": me is not None and p.id == me.id,
            "following": p.id in following,
        }
        for p in ctx.people.all(PEOPLE_SHOWN)
    ]
