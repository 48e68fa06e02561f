"""The gateway's image resources: upload, originals, thumbnails.

| method and path                          | who            | what                         |
|------------------------------------------|----------------|------------------------------|
| POST /api/images (multipart: file, title) | a person       | store, publish Create Image  |
| GET  /api/images/recent                  | anyone         | the newest, as a page shows  |
| GET  /images/{id}                        | anyone         | the original                 |
| GET  /images/{id}/thumbnails             | anyone         | which sizes exist            |
| GET  /images/{id}/thumbnails/{size}      | anyone         | one thumbnail                |
| PUT  /images/{id}/thumbnails/{size}      | a service      | store a thumbnail (bearer)   |

An upload is by the person signed in (or whose token it carries), within their rate limits
(``RATE_UPLOADS_PERSON``, ``RATE_UPLOADS_ADDRESS``). It is checked completely (size, then
Pillow) *before* anything is written, stored without its metadata (``metadata.py``),
written atomically, and only then announced: a refused upload leaves no file and no message.
Its decoding, and a thumbnail's, is inside the gateway's one budget (``intake.py``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from dovecote import activity as act
from dovecote.mqtt import BusError
from services.gateway import topics as gateway_topics
from services.gateway.bus import reachability
from services.gateway.context import CTX, Images
from services.gateway.images import checks as img
from services.gateway.images import intake, serving
from services.gateway.images.store import (
    BadName,
    NotFound,
    new_id,
    valid_id,
    valid_size,
)
from services.gateway.web import sessions
from services.gateway.web.limits import too_many

log = logging.getLogger("dovecote.gateway.images")
CHUNK = 64 * 1024
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the title field, beyond the file
TITLE_BYTES = 1024
THUMBNAIL_TYPES = {"image/jpeg", "image/webp", "image/png"}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/images", upload)
    app.router.add_get("/api/images/recent", recent_images)
    app.router.add_get("/images/{id}", get_original)
    app.router.add_get("/images/{id}/thumbnails", list_thumbnails)
    app.router.add_get("/images/{id}/thumbnails/{size}", get_thumbnail)
    app.router.add_put("/images/{id}/thumbnails/{size}", put_thumbnail)


def refuse(status: int, reason: str) -> web.HTTPException:
    """An HTTP error whose body is the reason, as plain text."""
    if status == 413:
        return web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=reason)
    kinds: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        415: web.HTTPUnsupportedMediaType,
        503: web.HTTPServiceUnavailable,
    }
    return kinds[status](text=reason)


def refused_image(exc: img.BadImage) -> web.HTTPException:
    """The answer to an image refused; a 503 (the decoding budget is taken) says when to
    come back."""
    error = refuse(exc.status, str(exc))
    if exc.status == 503:
        error.headers["Retry-After"] = "10"
    return error


def unavailable(exc: BusError) -> web.HTTPException:
    """503 with the reason: the event could not be accepted for delivery; try again later."""
    error = refuse(503, f"cannot accept this now: {exc}")
    error.headers["Retry-After"] = "10"
    return error


def _images(request: web.Request) -> Images:
    images = request.app[CTX].images
    if images is None:
        raise refuse(503, "this gateway stores no images")
    return images


# --- upload ----------------------------------------------------------------------------------


async def upload(request: web.Request) -> web.Response:
    ctx, images = request.app[CTX], _images(request)
    user = await sessions.need_person(request)  # before reading: a stranger is refused at once
    if request.content_type != "multipart/form-data":
        raise refuse(415, "send multipart/form-data with a `file` field: curl -F file=@cat.jpg")
    if (request.content_length or 0) > images.max_bytes + FORM_OVERHEAD:
        raise refuse(413, f"uploads are limited to {images.max_bytes:,} bytes")
    ctx.limits.check("uploads", user.id, request)
    loop = asyncio.get_running_loop()
    if images.allowance is not None:  # per person across gateways: the shared database's
        wait = await loop.run_in_executor(images.pool, images.allowance, user.id)
        if wait:
            raise too_many("too many uploads", wait)
    data, filename, title = await _read_form(request, images.max_bytes)
    try:
        data, info = await intake.accept(images, data, images.max_pixels)
    except img.BadImage as exc:
        raise refused_image(exc) from None

    actor = ctx.directory.actor(user)
    image_id = new_id()
    url = f"{images.public_url}/images/{image_id}"
    image = gateway_topics.Image(
        type="Image",
        id=url,
        url=url,
        mediaType=info.media_type,
        name=img.title(title or img.title_from_filename(filename)),
        width=info.width,
        height=info.height,
        size=info.size,
        attributedTo=actor,
    )
    context = act.new_id()  # the correlation id of this upload's journey
    activity = gateway_topics.ImageCreated(
        **act.envelope(), type="Create", actor=actor, object=image, context=context
    )
    store = images.store
    # As published, and when: the gallery says so.
    record = {**act.to_json(image), "published": act.to_json(activity.published)}
    await loop.run_in_executor(
        images.pool, store.save_original, image_id, info.extension, data, record
    )
    try:
        if ctx.promise is not None:
            on_the_bus = await ctx.promise(gateway_topics.IMAGE_CREATED, activity)
        else:
            ctx.publish(gateway_topics.IMAGE_CREATED, activity)
            on_the_bus = ctx.link.up
    except BusError as exc:  # the outbox is full (a long broker outage): refuse, keep nothing
        await loop.run_in_executor(images.pool, store.discard_original, image_id)
        raise unavailable(exc) from None
    except Exception:
        await loop.run_in_executor(images.pool, store.discard_original, image_id)
        raise
    log.info(
        "stored image %s (%s %dx%d, %d bytes) from %s [context=%s]",
        image_id,
        info.media_type,
        info.width,
        info.height,
        info.size,
        user.id,
        context,
    )
    body = {"id": image_id, "url": url, "context": context, "activity": activity.id}
    body.update(reachability.queued(ctx.link, on_the_bus))  # not on the bus yet: said
    return web.Response(
        status=201,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"Location": url},
    )


async def _read_form(request: web.Request, limit: int) -> tuple[bytes, str | None, str | None]:
    """The ``file`` (at most ``limit`` bytes), its client-side name and the ``title``."""
    data: bytes | None = None
    filename: str | None = None
    title: str | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise refuse(400, "nested multipart bodies are not accepted")
            if part.name == "file":
                if data is not None:
                    raise refuse(400, "one file per upload")
                filename = part.filename
                data = await _read_part(part, limit, f"uploads are limited to {limit:,} bytes")
            elif part.name == "title":
                raw = await _read_part(part, TITLE_BYTES, "the title is too long")
                title = raw.decode("utf-8", "replace")
            else:
                raise refuse(400, f"unknown form field {str(part.name)[:40]!r}: send file, title")
    except (ValueError, AssertionError) as exc:  # aiohttp's multipart parser errors
        raise refuse(400, f"malformed multipart body: {exc}") from None
    if data is None:
        raise refuse(400, "no `file` field in the form")
    return data, filename, title


async def _read_part(part: BodyPartReader, limit: int, too_big: str) -> bytes:
    buf = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise refuse(413, too_big)
    return bytes(buf)


# --- reading ---------------------------------------------------------------------------------


def _id(request: web.Request) -> str:
    try:
        return valid_id(request.match_info["id"])
    except BadName as exc:
        raise refuse(400, str(exc)) from None


def _size(request: web.Request) -> int:
    try:
        return valid_size(request.match_info["size"])
    except BadName as exc:
        raise refuse(400, str(exc)) from None


async def get_original(request: web.Request) -> web.StreamResponse:
    images = _images(request)
    found = await serving.in_pool(images, images.store.original, _id(request))
    return await serving.stored(request, images, found)


async def get_thumbnail(request: web.Request) -> web.StreamResponse:
    images = _images(request)
    found = await serving.in_pool(images, images.store.thumbnail, _id(request), _size(request))
    return await serving.stored(request, images, found)


async def list_thumbnails(request: web.Request) -> web.Response:
    images, image_id = _images(request), _id(request)
    if await serving.in_pool(images, images.store.original, image_id) is None:
        raise refuse(404, "no such image")
    base = f"{images.public_url}/images/{image_id}/thumbnails"
    sizes = await serving.in_pool(images, images.store.thumbnail_sizes, image_id)
    body: dict[str, Any] = {
        "@context": act.AS_CONTEXT,
        "type": "Collection",
        "totalItems": len(sizes),
        "items": [{"type": "Link", "href": f"{base}/{s}", "width": s} for s in sizes],
    }
    return web.Response(body=orjson.dumps(body), content_type=act.MEDIA_TYPE)


# --- thumbnails from the resizer -------------------------------------------------------------


def _authorise(request: web.Request, token: str | None) -> None:
    if token is None:
        raise refuse(503, "thumbnail uploads are disabled: DOVECOTE_SERVICE_TOKEN is not set")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        error = refuse(401, "a service credential is required (Authorization: Bearer ...)")
        error.headers["WWW-Authenticate"] = 'Bearer realm="dovecote"'
        raise error
    if not hmac.compare_digest(given.encode(), token.encode()):  # constant time
        raise refuse(403, "wrong service credential")


async def put_thumbnail(request: web.Request) -> web.Response:
    images = _images(request)
    _authorise(request, images.service_token)
    image_id, size = _id(request), _size(request)
    if request.content_type not in THUMBNAIL_TYPES:
        raise refuse(415, f"a thumbnail is one of {', '.join(sorted(THUMBNAIL_TYPES))}")
    if (request.content_length or 0) > images.max_bytes:
        raise refuse(413, f"thumbnails are limited to {images.max_bytes:,} bytes")
    body = bytearray()
    while chunk := await request.content.read(CHUNK):
        body += chunk
        if len(body) > images.max_bytes:
            raise refuse(413, f"thumbnails are limited to {images.max_bytes:,} bytes")
    loop = asyncio.get_running_loop()
    try:  # stored without metadata too, whatever the resizer sent
        data, info = await intake.accept(images, bytes(body), size * size)
    except img.BadImage as exc:
        if exc.status == 413:  # a thumbnail over its size is a bad request, not a bomb
            exc = img.BadImage(str(exc))
        raise refused_image(exc) from None
    if info.media_type != request.content_type:
        raise refuse(415, f"the body is {info.media_type}, not {request.content_type}")
    if max(info.width, info.height) > size:
        raise refuse(400, f"a {size}px thumbnail is {info.width}x{info.height}")
    try:
        await loop.run_in_executor(
            images.pool, images.store.save_thumbnail, image_id, size, info.extension, data
        )
    except NotFound:
        raise refuse(404, "no such image") from None
    url = f"{images.public_url}/images/{image_id}/thumbnails/{size}"
    return web.Response(status=201, text=url, headers={"Location": url})


async def recent_images(request: web.Request) -> web.Response:
    """The gallery as a page first paints it: what a page that could not resume reloads."""
    images = request.app[CTX].images
    pool = images.pool if images is not None else None
    found = await asyncio.get_running_loop().run_in_executor(pool, recent, images)
    return web.Response(body=orjson.dumps(found), content_type="application/json")


PAGE = 24  # images a page shows at once (the dashboard's gallery, /photos)


def recent(images: Images | None, limit: int = PAGE) -> list[dict[str, Any]]:
    """The newest images for a page's first paint: as published, plus their thumbnails."""
    return page(images, None, limit)[0]


def page(
    images: Images | None, before: str | None, limit: int = PAGE
) -> tuple[list[dict[str, Any]], bool]:
    """Images older than ``before`` (None: the newest) with their thumbnails, and whether
    older ones remain. ``NotFound``: no image ``before``."""
    if images is None:
        return [], False
    found, more = images.store.page(before, limit)
    ids = [image_id_of(image) for image in found]
    sizes = images.store.sizes_of([i for i in ids if _named(i)])  # one query, not one each
    previewed = [_previewed(images, image, sizes.get(image_id_of(image), [])) for image in found]
    return previewed, more


def with_previews(images: Images, image: dict[str, Any]) -> dict[str, Any]:
    """The stored image plus ``preview``: its thumbnails that exist (none yet: [])."""
    image_id = image_id_of(image)
    sizes = images.store.thumbnail_sizes(image_id) if _named(image_id) else []
    return _previewed(images, image, sizes)


def _named(image_id: str) -> bool:
    try:
        valid_id(image_id)
    except BadName:
        return False
    return True


def _previewed(images: Images, image: dict[str, Any], sizes: list[int]) -> dict[str, Any]:
    image_id = image_id_of(image)
    base = f"{images.public_url}/images/{image_id}/thumbnails"
    return {
        **image,
        "preview": [{"type": "Link", "href": f"{base}/{s}", "width": s} for s in sizes],
    }


def image_id_of(image: dict[str, Any]) -> str:
    return str(image.get("id", "")).rsplit("/", 1)[-1]
