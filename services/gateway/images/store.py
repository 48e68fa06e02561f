"""Where photos are kept: the interface, the names it accepts, and which store a gateway uses.

Two implementations, one interface (``ImageStore``):

Which one a gateway uses is ``placement.image_store``:

- **files** (the default, ``files.py``): originals and thumbnails under ``IMAGES_DIR`` on the
  gateway's disk, served by the OS. One machine: a second gateway elsewhere sees none of them.
- **the shared database** (``DATABASE_URL`` set, ``database.py``): the ``images`` schema, the
  bytes in chunks of ``CHUNK_BYTES``; any gateway on any machine serves any photo, and the
  resizer's thumbnails (PUT to whichever gateway) are everyone's.

The resizer never touches a store: it GETs the original by its URL and PUTs each thumbnail
back over HTTP (``services/resizer/service.py``), so any resizer worker on any machine can do
any image. A store's calls block (disk or database): the gateway makes them in its image
threads. A database out of reach raises ``dovecote.errors.StoreUnavailable`` (answered 503).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dovecote.topics import TopicError, check_id
from services.gateway.images.checks import EXTENSIONS

MEDIA_TYPES = {ext: media for media, ext in EXTENSIONS.items()}
CHUNK_BYTES = 256 * 1024  # what serving (and a database write) holds of one file at a time
_SIZE_RE = re.compile(r"^[1-9][0-9]{1,3}$")  # 10-9999 px


class NotFound(LookupError):
    pass


class BadName(ValueError):
    pass


@dataclass(frozen=True)
class StoredFile:
    """One stored original or thumbnail: its type and length, and where its bytes are."""

    media_type: str
    size: int  # bytes
    path: Path | None = None  # on disk: served by the OS (sendfile, ranges)
    blob: str | None = None  # in the database: read ``CHUNK_BYTES`` at a time (``chunk``)


class ImageStore(Protocol):
    """What the gateway asks of a store; every id and size has passed ``valid_id`` /
    ``valid_size``. Writes are whole or nothing: an image is listed once complete."""

    def open(self) -> ImageStore: ...

    def close(self) -> None: ...

    def save_original(
        self, image_id: str, ext: str, data: bytes, image: dict[str, Any]
    ) -> None: ...

    def discard_original(self, image_id: str) -> None:
        """Undo ``save_original`` (the announcement could not be published)."""

    def save_thumbnail(self, image_id: str, size: int, ext: str, data: bytes) -> None:
        """Store (or replace) a thumbnail; ``NotFound`` when there is no such original."""

    def original(self, image_id: str) -> StoredFile | None: ...

    def thumbnail(self, image_id: str, size: int) -> StoredFile | None: ...

    def chunk(self, found: StoredFile, n: int) -> bytes:
        """The ``n``-th ``CHUNK_BYTES`` of ``found`` (b"" past its end)."""

    def thumbnail_sizes(self, image_id: str) -> list[int]: ...

    def sizes_of(self, image_ids: list[str]) -> dict[str, list[int]]:
        """``thumbnail_sizes`` of many images at once (a page of the gallery)."""

    def page(self, before: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` images older than ``before`` (None: the newest), newest first,
        as published, and whether there are older ones still. ``NotFound``: no ``before``."""

    def recent(self, limit: int) -> list[dict[str, Any]]: ...

    def record(self, image_id: str) -> dict[str, Any] | None:
        """The image as published, with when (``published``), or None."""

    def neighbours(self, image_id: str) -> tuple[str | None, str | None]:
        """The ids of the next newer and the next older image."""


def read_all(store: ImageStore, found: StoredFile) -> bytes:
    """Every byte of ``found`` (tests and tools; serving streams ``chunk`` by ``chunk``)."""
    out = bytearray()
    n = 0
    while len(out) < found.size and (piece := store.chunk(found, n)):
        out += piece
        n += 1
    return bytes(out)


def new_id() -> str:
    return uuid.uuid4().hex


def valid_id(image_id: str) -> str:
    try:
        return check_id(image_id, "image id")
    except TopicError as exc:
        raise BadName(str(exc)) from None


def valid_size(size: str) -> int:
    if not _SIZE_RE.match(size):
        raise BadName(f"thumbnail size {size[:20]!r} must be a whole number of pixels, 10-9999")
    return int(size)


def is_size(text: str) -> bool:
    return _SIZE_RE.match(text) is not None
