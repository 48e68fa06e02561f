"""The user directory, served over REST as AS2 objects, from the accounts.

Subscribers that need a person (their name, their followers) GET them by URL: the seed's
"REST call to fetch John Doe". The notifier GETs ``followers`` for every notification, so a
follow made a second ago counts.

| method and path                | what                                         |
|--------------------------------|----------------------------------------------|
| GET /users                     | everyone (a Collection of actors)            |
| GET /users/{user}              | one Person                                   |
| GET /users/{user}/followers    | who follows them (Collection)                |
| GET /users/{user}/following    | whom they follow (Collection)                |
| GET /users/{user}/avatar.svg   | their initials on a colour                   |
"""

from __future__ import annotations

import html
from typing import Any

import orjson
from aiohttp import web

from dovecote import activity as act
from services.gateway.accounts.credentials import Person
from services.gateway.context import CTX, Context

LISTED = 1000  # people in GET /users at most


def add_routes(app: web.Application) -> None:
    app.router.add_get("/users", list_people)
    app.router.add_get("/users/{user}", get_person)
    app.router.add_get("/users/{user}/followers", get_followers)
    app.router.add_get("/users/{user}/following", get_following)
    app.router.add_get("/users/{user}/avatar.svg", get_avatar)


def _ctx(request: web.Request) -> Context:
    return request.app[CTX]


def _person(request: web.Request) -> Person:
    found = _ctx(request).people.get(request.match_info["user"])
    if found is None:
        raise web.HTTPNotFound(text="no such person")
    return found


def _as2(body: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type=act.MEDIA_TYPE)


async def list_people(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    return _as2(ctx.directory.collection(f"{ctx.directory.base_url}/users", ctx.people.all(LISTED)))


async def get_person(request: web.Request) -> web.Response:
    return _as2(_ctx(request).directory.person(_person(request)))


async def get_followers(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), _person(request)
    url = f"{ctx.directory.url(who.id)}/followers"
    return _as2(ctx.directory.collection(url, ctx.people.followers(who.id)))


async def get_following(request: web.Request) -> web.Response:
    ctx, who = _ctx(request), _person(request)
    url = f"{ctx.directory.url(who.id)}/following"
    return _as2(ctx.directory.collection(url, ctx.people.following(who.id)))


def avatar_svg(person: Person) -> str:
    initials = html.escape("".join(w[0] for w in person.name.split()[:2]).upper())
    hue = sum(map(ord, person.id)) * 47 % 360
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        f'<circle cx="32" cy="32" r="32" fill="hsl({hue},55%,45%)"/>'
        '<text x="32" y="41" font-family="sans-serif" font-size="24" fill="#fff" '
        f'text-anchor="middle">{initials}</text></svg>'
    )


async def get_avatar(request: web.Request) -> web.Response:
    return web.Response(
        text=avatar_svg(_person(request)),
        content_type="image/svg+xml",
        headers={"Cache-Control": "max-age=300"},
    )
