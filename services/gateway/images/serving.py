"""Serving a stored original or thumbnail, and a store's calls off the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from services.gateway.context import Images
from services.gateway.images.store import StoredFile

log = logging.getLogger("dovecote.gateway.images")
T = TypeVar("T")
IMMUTABLE = "public, max-age=31536000, immutable"  # ids are never reused
# A stored file is a person's bytes: a valid image may still carry HTML or script after its
# end (a polyglot). Served with the type its bytes proved, nosniff, and, opened on its own,
# in a sandbox with nothing allowed, so those bytes never run as this origin's page.
STORED_FILE_CSP = "default-src 'none'; sandbox"


async def stored(
    request: web.Request, images: Images, found: StoredFile | None
) -> web.StreamResponse:
    """A stored file: from disk by the OS, from the database a chunk at a time (what is
    held is one chunk, ``CHUNK_BYTES``)."""
    if found is None:
        raise web.HTTPNotFound(text="no such image")
    headers = {
        "Content-Type": found.media_type,
        "Cache-Control": IMMUTABLE,
        "Content-Security-Policy": STORED_FILE_CSP,
    }
    if found.path is not None:
        return web.FileResponse(found.path, headers=headers)
    loop = asyncio.get_running_loop()
    # The first chunk before the answer starts: a database out of reach is still a 503.
    piece = await loop.run_in_executor(images.pool, images.store.chunk, found, 0)
    response = web.StreamResponse(headers=headers)
    response.content_length = found.size
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    sent, n = 0, 0
    while piece:
        await response.write(piece)
        sent, n = sent + len(piece), n + 1
        if sent >= found.size:
            break
        piece = await loop.run_in_executor(images.pool, images.store.chunk, found, n)
    if sent < found.size:  # replaced meanwhile: cut short, the client sees it by the length
        log.warning("served %d of %d bytes of %s: its chunks went", sent, found.size, found.blob)
    await response.write_eof()
    return response


async def in_pool(images: Images, job: Callable[..., T], *args: Any) -> T:
    """A store's call, off the event loop (the disk, or a round trip to the database)."""
    return await asyncio.get_running_loop().run_in_executor(images.pool, job, *args)
