"""The gallery: every photo, a page of 24 at a time, and each one on a page of its own.

| method and path            | what                                                       |
|----------------------------|------------------------------------------------------------|
| GET /photos                | the newest 24 photos; ``?before=<id>``: the 24 older ones  |
| GET /photos/{id}           | one photo: full size, title, who, when, its sizes          |
| GET /api/images            | the same pages as JSON (``?before=<id>&limit=<1-100>``)    |

Pages are drawn on the server and work without a script: every tile is a link, and paging
is a link, so a keyboard (Tab, Enter) reaches everything; on a photo's page the arrow keys
also go to the newer and older one (``static/photos.js``). The dashboard's gallery loads
the older pages in place from ``/api/images``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import aiohttp_jinja2
import orjson
from aiohttp import web

from dovecote import activity as act
from services.gateway.bus import federation_status
from services.gateway.context import CTX, Context, Images
from services.gateway.images import image_api
from services.gateway.images.store import BadName, NotFound, valid_id
from services.gateway.web import sessions

MAX_LIMIT = 100
FORMAT_NAMES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WebP"}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/photos", photos_page)
    app.router.add_get("/photos/{id}", photo_page)
    app.router.add_get("/api/images", images_page)


def _images(ctx: Context) -> Images:
    if ctx.images is None:
        raise web.HTTPServiceUnavailable(text="this gateway stores no images")
    return ctx.images


def _before(request: web.Request) -> str | None:
    before = request.query.get("before")
    if before is None:
        return None
    try:
        return valid_id(before)
    except BadName as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def _page(ctx: Context, before: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    images = _images(ctx)
    try:
        return await asyncio.get_running_loop().run_in_executor(
            images.pool, image_api.page, images, before, limit
        )
    except NotFound:
        raise web.HTTPNotFound(text=f"no photo {before}") from None


async def images_page(request: web.Request) -> web.Response:
    """One page of the gallery as an AS2 OrderedCollectionPage; ``next`` while there are
    older ones."""
    ctx = request.app[CTX]
    raw = request.query.get("limit", str(image_api.PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"limit must be a whole number, 1-{MAX_LIMIT}")
    before, limit = _before(request), int(raw)
    found, more = await _page(ctx, before, limit)
    body: dict[str, Any] = {
        "@context": act.AS_CONTEXT,
        "type": "OrderedCollectionPage",
        "orderedItems": found,
    }
    if more and found:
        last = image_api.image_id_of(found[-1])
        body["next"] = f"{ctx.public_url}/api/images?before={last}&limit={limit}"
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _render(request: web.Request, template: str, context: dict[str, Any]) -> web.Response:
    who = await sessions.person(request) if "Authorization" not in request.headers else None
    context = {"person": who, "csrf": await sessions.csrf_token(request), **context}
    response = aiohttp_jinja2.render_template(template, request, context)
    response.headers["Cache-Control"] = "no-store"
    return response


async def photos_page(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    before = _before(request)
    found, more = await _page(ctx, before, image_api.PAGE)
    return await _render(
        request,
        "photos/photos.html",
        {
            "tiles": [tile(image) for image in found],
            "older": image_api.image_id_of(found[-1]) if more and found else None,
            "paged": before is not None,
        },
    )


async def photo_page(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    images = _images(ctx)
    try:
        image_id = valid_id(request.match_info["id"])
    except BadName as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    loop = asyncio.get_running_loop()
    record = await loop.run_in_executor(images.pool, images.store.record, image_id)
    if record is None:
        raise web.HTTPNotFound(text="no such photo")
    image = await loop.run_in_executor(images.pool, image_api.with_previews, images, record)
    newer, older = await loop.run_in_executor(images.pool, images.store.neighbours, image_id)
    stored = await loop.run_in_executor(images.pool, images.store.original, image_id)
    return await _render(
        request,
        "photos/photo.html",
        {
            "photo": tile(image),
            "newer": newer,
            "older": older,
            "original": f"/images/{image_id}",
            "media": FORMAT_NAMES.get(stored.media_type if stored else "", "image"),
            "resizer": resizer_status(ctx),
        },
    )


def resizer_status(ctx: Context) -> str:
    """What a photo without thumbnails is waiting for, in words."""
    if federation_status.online(ctx.hub, ctx.root, "resizer") is False:
        return "waiting for the resizer: it is offline; the thumbnails come when it is back"
    return "being resized…"


def tile(image: dict[str, Any]) -> dict[str, Any]:
    """What a page shows of one image (titles and names are text: the template escapes)."""
    by = image.get("attributedTo") or {}
    width, height = int(image.get("width") or 1), int(image.get("height") or 1)
    previews = sorted(
        (p for p in image.get("preview", []) if isinstance(p, dict)), key=lambda p: p["width"]
    )
    paths = [(p["width"], "/" + p["href"].split("/", 3)[-1]) for p in previews]
    return {
        "id": image_api.image_id_of(image),
        "url": image.get("id", ""),
        "title": image.get("name") or "Untitled",
        "by": by.get("name") or by.get("preferredUsername") or "",
        "by_id": by.get("preferredUsername") or "",
        "published": image.get("published", ""),
        "when": when(image.get("published", "")),
        "width": width,
        "height": height,
        "ratio": f"{min(3.0, max(0.5, width / height)):.3f}",
        "bytes": size_text(int(image.get("size") or 0)),
        "thumbs": paths,
        "src": next((p for w, p in paths if w >= 256), paths[-1][1] if paths else None),
        "srcset": ", ".join(f"{p} {w}w" for w, p in paths),
    }


def when(published: str) -> str:
    """``2026-11-29 05:30 UTC``: a page's script shows it in the reader's own time."""
    try:
        stamp = datetime.fromisoformat(published.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def size_text(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MB"
    return f"{max(1, round(size / 1024))} KB"
