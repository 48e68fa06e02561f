"""What the gateway's app opens and closes with it, by aiohttp's ``cleanup_ctx``: set up
before the first request, released in reverse order when its runner is cleaned up.

The app owns its context: whoever builds the ``Context`` hands over its threads and its
accounts store, closed here after the last request, so no one closes them by hand. Open
websockets are closed at shutdown (``on_shutdown``), before the server waits for its
handlers: an open page's socket would otherwise hold the shutdown for its whole timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from services.gateway.context import CTX

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def own_context(app: web.Application) -> None:
    """Close the app's context with the app: its sockets, then its threads and store."""
    app.on_shutdown.append(close_sockets)
    app.cleanup_ctx.append(context_resources)


async def close_sockets(app: web.Application) -> None:
    await app[CTX].hub.close_all()


async def context_resources(app: web.Application) -> AsyncIterator[None]:
    ctx = app[CTX]
    yield
    if ctx.images is not None:
        ctx.images.pool.shutdown(wait=True)  # image jobs in flight finish first
    ctx.hashing.shutdown(wait=True)
    ctx.people.close()


def background(name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> CleanupCtx:
    """A task that runs while the app does: started with it, cancelled and awaited at
    cleanup, before the context it uses is released."""

    async def running(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(work(), name=name)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return running
