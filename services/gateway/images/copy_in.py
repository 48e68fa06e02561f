"""Photos kept as files, copied into the shared database: the move to ``DATABASE_URL``.

    python -m services.gateway.images.copy_in      # with the gateway's environment

Reads ``IMAGES_DIR`` (else ``$DOVECOTE_DATA_DIR/images``) and writes every complete image,
with its thumbnails, into the ``images`` schema of ``DATABASE_URL``, oldest first, so the
gallery keeps its order. Images already there are left alone: run it again after a
failure, or once more after the last file-store gateway has stopped, to catch its last
uploads. The files are not removed (remove them once the gateways serve from the database).
"""

from __future__ import annotations

import sys
from pathlib import Path

from dovecote.config import ConfigError, Settings
from dovecote.errors import StoreUnavailable
from services.gateway.images.checks import EXTENSIONS
from services.gateway.images.database import DatabaseImages
from services.gateway.images.files import FileImages


def copy_in(files: FileImages, shared: DatabaseImages) -> tuple[int, int]:
    """(images copied, images that were there already)."""
    copied = present = 0
    for image_id in reversed(files.ordered()):  # oldest first: the database keeps the order
        if shared.original(image_id) is not None:
            present += 1
            continue
        found, record = files.original(image_id), files.record(image_id)
        if found is None or found.path is None or record is None:  # discarded meanwhile
            continue
        ext = EXTENSIONS[found.media_type]
        shared.save_original(image_id, ext, found.path.read_bytes(), record)
        for size in files.thumbnail_sizes(image_id):
            thumb = files.thumbnail(image_id, size)
            if thumb is not None and thumb.path is not None:
                data = thumb.path.read_bytes()
                shared.save_thumbnail(image_id, size, EXTENSIONS[thumb.media_type], data)
        copied += 1
    return copied, present


def main() -> int:
    try:
        settings = Settings.from_env()
        if not settings.get_str("DATABASE_URL", ""):
            raise ConfigError("DATABASE_URL is not set: there is no database to copy into")
        folder = Path(settings.get_str("IMAGES_DIR", str(settings.data_dir / "images")))
        shared = DatabaseImages.at(settings, None, settings.data_dir / "images.sqlite3").open()
    except (ConfigError, StoreUnavailable) as exc:
        print(f"copy_in: {exc}", file=sys.stderr)
        return 2
    try:
        copied, present = copy_in(FileImages(folder).open(), shared)
    finally:
        shared.close()
    print(f"copied {copied} images from {folder} into {shared.place.shown}; {present} were there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
