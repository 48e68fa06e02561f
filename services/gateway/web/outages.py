"""A store that cannot be reached: the request it was needed for is answered 503.

The accounts store (PostgreSQL with ``DATABASE_URL``) may be down or restarting. A request
that needs it then gets ``503 Service Unavailable`` with ``Retry-After`` and the reason, at
once (the driver's connect timeout at most, ``dovecote.store.database``), never a 500 or a
hang; nothing was stored, so trying again is safe. Requests that need no store (the
dashboard's static files, ``/healthz``) go on being served. When the database is back the
next request reaches it: the broken connections were dropped from the pool.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from dovecote.errors import StoreUnavailable

log = logging.getLogger("dovecote.gateway.outages")
RETRY_AFTER_S = 5
LOG_EVERY_S = 10.0  # one line per outage and this interval, not one per request


class _Said:
    last = 0.0


@web.middleware
async def store_unavailable(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except StoreUnavailable as exc:
        now = time.monotonic()
        if now - _Said.last >= LOG_EVERY_S:
            _Said.last = now
            log.warning("answering 503 to %s %s: %s", request.method, request.path, exc)
        raise web.HTTPServiceUnavailable(
            text="The accounts store cannot be reached just now: nothing was changed. "
            f"Try again in a few seconds. ({exc})",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None
    return response
