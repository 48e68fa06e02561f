"""The image store in files (the default): originals and thumbnails under ``IMAGES_DIR``.

Layout under the store's directory (``IMAGES_DIR``)::

    originals/<id>.<ext>            the uploaded bytes, unchanged
    originals/<id>.json             the AS2 Image as published, and when (for the gallery)
    thumbnails/<id>/<size>.<ext>    what the resizer PUT

A client's file name never becomes a path: ids are generated here (uuid4 hex) and every id
or size read from a URL passes ``check_id`` / a digit check first, so ``..``, ``/``, NUL or
a leading dot cannot reach the file system. Every file is written to a temporary name in the
same directory and renamed into place (atomic on POSIX): a reader, or a crash, never sees
half a file. The JSON is renamed last, so an image is listed only once it is complete.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from services.gateway.images.store import (
    CHUNK_BYTES,
    MEDIA_TYPES,
    NotFound,
    StoredFile,
    is_size,
    valid_id,
)


class FileImages:
    """``ImageStore`` in a directory of one machine."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.originals = directory / "originals"
        self.thumbnails = directory / "thumbnails"

    def open(self) -> FileImages:
        self.originals.mkdir(parents=True, exist_ok=True)
        self.thumbnails.mkdir(parents=True, exist_ok=True)
        return self

    def close(self) -> None:
        pass

    # --- writing (call from a thread: file I/O blocks) -------------------------------------

    def save_original(self, image_id: str, ext: str, data: bytes, image: dict[str, Any]) -> None:
        valid_id(image_id)
        _write_atomically(self.originals / f"{image_id}.{ext}", data)
        _write_atomically(self.originals / f"{image_id}.json", orjson.dumps(image))

    def discard_original(self, image_id: str) -> None:
        """Undo ``save_original`` (the announcement could not be published)."""
        for path in self._original_files(valid_id(image_id)):
            path.unlink(missing_ok=True)

    def save_thumbnail(self, image_id: str, size: int, ext: str, data: bytes) -> None:
        if self.original(image_id) is None:
            raise NotFound(f"no image {image_id}")
        folder = self.thumbnails / image_id
        folder.mkdir(exist_ok=True)
        for old in folder.glob(f"{size}.*"):  # a re-encode in another format replaces it
            if old.suffix != f".{ext}":
                old.unlink(missing_ok=True)
        _write_atomically(folder / f"{size}.{ext}", data)

    # --- reading -----------------------------------------------------------------------------

    def original(self, image_id: str) -> StoredFile | None:
        valid_id(image_id)
        for ext, media in MEDIA_TYPES.items():
            path = self.originals / f"{image_id}.{ext}"
            if found := _stored(path, media):
                return found
        return None

    def thumbnail(self, image_id: str, size: int) -> StoredFile | None:
        folder = self.thumbnails / valid_id(image_id)
        for ext, media in MEDIA_TYPES.items():
            if found := _stored(folder / f"{size}.{ext}", media):
                return found
        return None

    def chunk(self, found: StoredFile, n: int) -> bytes:
        assert found.path is not None
        with found.path.open("rb") as f:
            f.seek(n * CHUNK_BYTES)
            return f.read(CHUNK_BYTES)

    def thumbnail_sizes(self, image_id: str) -> list[int]:
        folder = self.thumbnails / valid_id(image_id)
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.iterdir() if is_size(p.stem))

    def sizes_of(self, image_ids: list[str]) -> dict[str, list[int]]:
        return {image_id: self.thumbnail_sizes(image_id) for image_id in image_ids}

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest complete images, newest first, as published (AS2 Image objects)."""
        return self.page(None, limit)[0]

    def ordered(self) -> list[str]:
        """Every complete image's id, newest first (by when its record was written)."""
        found = []
        for meta in self.originals.glob("*.json"):
            with contextlib.suppress(OSError):  # removed meanwhile (a discarded upload)
                found.append((meta.stat().st_mtime_ns, meta.stem))
        return [image_id for _, image_id in sorted(found, reverse=True)]

    def page(self, before: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` images older than ``before`` (None: the newest), newest first,
        and whether there are older ones still. ``NotFound``: no image ``before``."""
        ids = self.ordered()
        start = 0
        if before is not None:
            try:
                start = ids.index(valid_id(before)) + 1
            except ValueError:
                raise NotFound(f"no image {before}") from None
        out = [r for r in map(self.record, ids[start : start + limit]) if r is not None]
        return out, start + limit < len(ids)

    def record(self, image_id: str) -> dict[str, Any] | None:
        """The image as published, with when (``published``; the record's time for an image
        stored before it was kept), or None."""
        meta = self.originals / f"{valid_id(image_id)}.json"
        try:
            image: dict[str, Any] = orjson.loads(meta.read_bytes())
            if "published" not in image:
                stamp = datetime.fromtimestamp(meta.stat().st_mtime, UTC)
                image["published"] = stamp.isoformat(timespec="milliseconds")
        except (OSError, orjson.JSONDecodeError):
            return None
        return image

    def neighbours(self, image_id: str) -> tuple[str | None, str | None]:
        """The ids of the next newer and the next older image."""
        ids = self.ordered()
        try:
            at = ids.index(valid_id(image_id))
        except ValueError:
            return None, None
        return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)

    def files(self) -> Iterator[Path]:
        """Every file in the store (tests check nothing was half-stored)."""
        return (p for p in self.directory.rglob("*") if p.is_file())

    def _original_files(self, image_id: str) -> list[Path]:
        return [self.originals / f"{image_id}.{ext}" for ext in (*MEDIA_TYPES, "json")]


def _stored(path: Path, media_type: str) -> StoredFile | None:
    try:
        return StoredFile(media_type, path.stat().st_size, path=path)
    except FileNotFoundError:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with tmp.open("xb") as f:
            f.write(data)
        # No fsync: the rename guards readers and a crashed gateway against half files; a
        # power cut may still lose uploads of the last seconds (the page cache's, not ours).
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
