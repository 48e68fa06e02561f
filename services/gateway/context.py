"""What every gateway request handler shares: the app's context and who is asking."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from dovecote.topics import Topic
from services.gateway.hub import Hub
from services.gateway.store import ImageStore
from services.gateway.users import Directory, User

USER_COOKIE = "dovecote_user"

Publish = Callable[[Topic, dict[str, Any]], None]


@dataclass(frozen=True)
class Images:
    """The image resources: where they are stored, what is accepted, who may add thumbnails."""

    store: ImageStore
    public_url: str
    max_bytes: int
    max_pixels: int
    max_decoded: int  # bytes an image may decode to (IMAGE_MAX_DECODED_BYTES)
    service_token: str | None  # None: thumbnail uploads are refused (503)
    pool: Executor  # Pillow and file I/O run here, off the event loop


@dataclass
class Context:
    hub: Hub
    directory: Directory
    publish: Publish
    root: str
    images: Images | None = None


CTX = web.AppKey("ctx", Context)


def current_user(request: web.Request) -> User:
    """Who the browser says it is (demo users: choosing is all it takes).

    Asking for someone who is not in the directory is refused, never answered with the
    default user: that socket would get another person's notifications. A stale cookie
    (the directory changed) falls back to the default.
    """
    directory = request.app[CTX].directory
    asked = request.query.get("as")
    if asked is not None:
        user = directory.users.get(asked)
        if user is None:
            raise web.HTTPBadRequest(text=f"no such user {asked[:64]!r}")
        return user
    return directory.users.get(request.cookies.get(USER_COOKIE) or "", directory.default)


def same_origin(request: web.Request) -> bool:
    """Refuse cross-site requests (websocket hijacking, cross-site form posts).

    Browsers send ``Origin`` on these; scripts such as curl send none and are let through.
    """
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host
