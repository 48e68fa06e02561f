"""Which image store a gateway uses, and where its uploads per person are counted."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from dovecote.config import Settings
from services.gateway.images.database import DatabaseImages
from services.gateway.images.files import FileImages
from services.gateway.images.store import ImageStore
from services.gateway.web.limits import Limits


def image_store(settings: Settings) -> ImageStore:
    """The store the environment says: the shared database when ``DATABASE_URL`` is set,
    else files under ``IMAGES_DIR`` (default ``<data>/images``)."""
    if settings.get_str("DATABASE_URL", ""):
        return DatabaseImages.at(settings, None, settings.data_dir / "images.sqlite3")
    return FileImages(Path(settings.get_str("IMAGES_DIR", str(settings.data_dir / "images"))))


def shared_allowance(store: ImageStore, limits: Limits) -> Callable[[str], float] | None:
    """Uploads per person (``RATE_UPLOADS_PERSON``) counted in the shared database when the
    store is there, for every gateway at once; else in each gateway's memory (``limits``)."""
    if not isinstance(store, DatabaseImages):
        return None
    rate = limits.take_over("uploads", "person")
    if rate is None:
        return None
    return functools.partial(store.take_upload, count=rate.count, per=rate.per)
