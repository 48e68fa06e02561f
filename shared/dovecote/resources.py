"""Fetching and storing federation resources over REST (the seed's "fetch John Doe").

Activities carry URLs; a subscriber that needs the bytes or the JSON behind one GETs it
here. Only URLs under the gateway's public URL are followed: a URL in a bus message is
input, and a service must not be talked into fetching (or sending its credential to) an
arbitrary host. Bodies are read up to a limit, never unbounded.

Failures come in two kinds, because the runtime treats them differently:
``Unprocessable`` (a 4xx, a foreign URL, a body over the limit: retrying cannot help, the
message is dead-lettered with the reason) and transient ones (refused connection, timeout,
5xx), retried here with backoff for a while (a gateway restart takes seconds) and then
raised, so the runtime retries or parks the message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson

from dovecote.errors import DovecoteError, Unprocessable

log = logging.getLogger("dovecote.resources")

TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5)
BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)  # ~16 s: longer than a gateway restart


class Transient(DovecoteError, RuntimeError):
    """The resource could not be reached right now (5xx, refused, timeout). ``come_back``:
    the server answered 503 with ``Retry-After`` (its own store is out of reach, say): it
    will serve again, and a message that needs it should wait, not be parked."""

    def __init__(self, message: str, come_back: bool = False) -> None:
        super().__init__(message)
        self.come_back = come_back


class Resources:
    """An HTTP client bound to one origin (the gateway's public URL)."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> Resources:
        self._session = aiohttp.ClientSession(timeout=TIMEOUT, raise_for_status=False)
        return self

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def check(self, url: str) -> str:
        """``url`` if it is a resource of the gateway, else ``Unprocessable``."""
        if not url.startswith(self.base_url + "/"):
            raise Unprocessable(f"refusing to fetch {url[:200]!r}: not under {self.base_url}/")
        return url

    async def get_bytes(self, url: str, limit: int) -> tuple[bytes, str]:
        """The body (at most ``limit`` bytes) and its media type."""

        async def attempt(session: aiohttp.ClientSession) -> tuple[bytes, str]:
            async with session.get(self.check(url)) as r:
                _raise_for(r, url)
                if (r.content_length or 0) > limit:
                    raise Unprocessable(f"{url} is {r.content_length} bytes, over {limit}")
                body = bytearray()
                async for chunk in r.content.iter_chunked(64 * 1024):  # read() may stop short
                    body += chunk
                    if len(body) > limit:
                        raise Unprocessable(f"{url} is over the {limit}-byte limit")
                return bytes(body), r.content_type

        body: tuple[bytes, str] = await self._retrying(attempt, url)
        return body

    async def get_json(self, url: str, limit: int = 1024 * 1024) -> Any:
        body, _ = await self.get_bytes(url, limit)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Unprocessable(f"{url} did not return JSON: {exc}") from None

    async def put(self, url: str, body: bytes, media_type: str) -> None:
        """Store ``body`` at ``url``, authenticated with the service credential."""
        headers = {"Content-Type": media_type}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"

        async def attempt(session: aiohttp.ClientSession) -> None:
            async with session.put(self.check(url), data=body, headers=headers) as r:
                _raise_for(r, url)

        await self._retrying(attempt, url)

    async def _retrying(self, attempt: Any, url: str) -> Any:
        assert self._session is not None, "Resources.open() first"
        for delay in (*BACKOFF, None):
            try:
                return await attempt(self._session)
            except (Transient, aiohttp.ClientError, TimeoutError) as exc:
                if delay is None:
                    again = isinstance(exc, Transient) and exc.come_back
                    raise Transient(f"{url}: {exc!r}", again) from None
                log.info("%s: %r; trying again in %.1f s", url, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")


def _raise_for(r: aiohttp.ClientResponse, url: str) -> None:
    if r.status >= 500:
        come_back = r.status == 503 and "Retry-After" in r.headers
        raise Transient(f"{url} answered {r.status}", come_back)
    if r.status >= 400:
        raise Unprocessable(f"{r.method} {url} answered {r.status} {r.reason or ''}".strip())
