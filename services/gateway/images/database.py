"""The image store in the shared database (``DATABASE_URL``): any gateway serves any photo.

Schema ``images`` (``migrations/``): a row per image (its record as published, in the order
stored), a row per thumbnail, and the bytes of both in ``chunks`` of ``CHUNK_BYTES``. A write
is one transaction (an image is listed only once every chunk is in); serving reads one chunk
per query, so a gateway holds one chunk of a file it serves, never the file. An original's
chunks are keyed by its id; a thumbnail's by a new key each time it is stored, so a
replaced thumbnail is never served half old, half new.

Runs on SQLite too (the tests run it on both); a gateway picks it only for ``DATABASE_URL``
(else the files of ``files.py``).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, text

from dovecote.store import Store
from services.gateway.images.store import (
    CHUNK_BYTES,
    MEDIA_TYPES,
    NotFound,
    StoredFile,
    valid_id,
)

ORIGINAL = text("SELECT media_type, size FROM images WHERE id = :id")
THUMBNAIL = text(
    "SELECT media_type, bytes, blob FROM thumbnails WHERE image_id = :id AND size = :size"
)
CHUNK = text("SELECT data FROM chunks WHERE blob = :blob AND n = :n")
ADD_CHUNK = text("INSERT INTO chunks (blob, n, data) VALUES (:blob, :n, :data)")
DROP_CHUNKS = text("DELETE FROM chunks WHERE blob = :blob")
SIZES_OF = text(
    "SELECT image_id, size FROM thumbnails WHERE image_id IN :ids ORDER BY image_id, size"
).bindparams(bindparam("ids", expanding=True))
SEQ = text("SELECT seq FROM images WHERE id = :id")


class DatabaseImages(Store):
    """``ImageStore`` in the ``images`` schema."""

    name = "images"
    migrations = Path(__file__).with_name("migrations")

    # --- writing -------------------------------------------------------------------------

    def save_original(self, image_id: str, ext: str, data: bytes, image: dict[str, Any]) -> None:
        valid_id(image_id)
        with self.db.transaction() as conn:
            _write_chunks(conn, image_id, data)
            conn.execute(
                text(
                    "INSERT INTO images (id, media_type, size, record) "
                    "VALUES (:id, :media, :size, :record)"
                ),
                {
                    "id": image_id,
                    "media": MEDIA_TYPES[ext],
                    "size": len(data),
                    "record": orjson.dumps(image).decode(),
                },
            )

    def discard_original(self, image_id: str) -> None:
        with self.db.transaction() as conn:
            params = {"id": valid_id(image_id)}
            conn.execute(
                text(
                    "DELETE FROM chunks WHERE blob = :id "
                    "OR blob IN (SELECT blob FROM thumbnails WHERE image_id = :id)"
                ),
                params,
            )
            conn.execute(text("DELETE FROM thumbnails WHERE image_id = :id"), params)
            conn.execute(text("DELETE FROM images WHERE id = :id"), params)

    def save_thumbnail(self, image_id: str, size: int, ext: str, data: bytes) -> None:
        params = {"id": valid_id(image_id), "size": size}
        with self.db.transaction() as conn:
            # A no-op that locks the image's row (PostgreSQL; SQLite's transaction holds the
            # whole file): two PUTs of one thumbnail take turns, neither leaves chunks behind.
            locked = conn.execute(text("UPDATE images SET id = id WHERE id = :id"), params)
            if not locked.rowcount:
                raise NotFound(f"no image {image_id}")
            old = conn.execute(THUMBNAIL, params).first()
            if old is not None:
                conn.execute(DROP_CHUNKS, {"blob": old.blob})
            blob = f"{image_id}/{size}/{uuid.uuid4().hex}"
            _write_chunks(conn, blob, data)
            conn.execute(
                text(
                    "INSERT INTO thumbnails (image_id, size, media_type, bytes, blob) "
                    "VALUES (:id, :size, :media, :bytes, :blob) "
                    "ON CONFLICT (image_id, size) DO UPDATE SET media_type = excluded.media_type,"
                    " bytes = excluded.bytes, blob = excluded.blob"
                ),
                {**params, "media": MEDIA_TYPES[ext], "bytes": len(data), "blob": blob},
            )

    # --- reading -------------------------------------------------------------------------

    def original(self, image_id: str) -> StoredFile | None:
        with self.db.transaction() as conn:
            row = conn.execute(ORIGINAL, {"id": valid_id(image_id)}).first()
        return None if row is None else StoredFile(row.media_type, row.size, blob=image_id)

    def thumbnail(self, image_id: str, size: int) -> StoredFile | None:
        with self.db.transaction() as conn:
            row = conn.execute(THUMBNAIL, {"id": valid_id(image_id), "size": size}).first()
        return None if row is None else StoredFile(row.media_type, row.bytes, blob=row.blob)

    def chunk(self, found: StoredFile, n: int) -> bytes:
        with self.db.transaction() as conn:
            data = conn.execute(CHUNK, {"blob": found.blob, "n": n}).scalar()
        return b"" if data is None else bytes(data)

    def thumbnail_sizes(self, image_id: str) -> list[int]:
        with self.db.transaction() as conn:
            rows = conn.execute(
                text("SELECT size FROM thumbnails WHERE image_id = :id ORDER BY size"),
                {"id": valid_id(image_id)},
            )
            return [int(size) for (size,) in rows]

    def sizes_of(self, image_ids: list[str]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {valid_id(image_id): [] for image_id in image_ids}
        if not found:
            return found
        with self.db.transaction() as conn:
            rows = conn.execute(SIZES_OF, {"ids": list(found)})
            for image_id, size in rows:
                found[image_id].append(int(size))
        return found

    def recent(self, limit: int) -> list[dict[str, Any]]:
        return self.page(None, limit)[0]

    def page(self, before: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        with self.db.transaction() as conn:
            below = None
            if before is not None:
                below = conn.execute(SEQ, {"id": valid_id(before)}).scalar()
                if below is None:
                    raise NotFound(f"no image {before}")
            older = "" if below is None else "WHERE seq < :below "
            rows = conn.execute(
                text(f"SELECT record FROM images {older}ORDER BY seq DESC LIMIT :limit"),
                {"below": below, "limit": limit + 1},
            ).all()
        return [orjson.loads(r.record) for r in rows[:limit]], len(rows) > limit

    def record(self, image_id: str) -> dict[str, Any] | None:
        with self.db.transaction() as conn:
            found = conn.execute(
                text("SELECT record FROM images WHERE id = :id"), {"id": valid_id(image_id)}
            ).scalar()
        return None if found is None else dict(orjson.loads(found))

    def neighbours(self, image_id: str) -> tuple[str | None, str | None]:
        with self.db.transaction() as conn:
            seq = conn.execute(SEQ, {"id": valid_id(image_id)}).scalar()
            if seq is None:
                return None, None
            newer = conn.execute(
                text("SELECT id FROM images WHERE seq > :seq ORDER BY seq LIMIT 1"), {"seq": seq}
            ).scalar()
            older = conn.execute(
                text("SELECT id FROM images WHERE seq < :seq ORDER BY seq DESC LIMIT 1"),
                {"seq": seq},
            ).scalar()
        return newer, older

    # --- the upload allowance (RATE_UPLOADS_PERSON across gateways) ----------------------

    def take_upload(self, person: str, count: int, per: float, now: float | None = None) -> float:
        """0 if ``person`` may upload now (counted), else the seconds until they may: a
        token bucket of ``count`` refilled over ``per`` seconds, kept here so that every
        gateway sharing the database counts against the same one."""
        now = time.time() if now is None else now
        refill = count / per
        params = {"person": person, "now": now, "count": count, "refill": refill}
        with self.db.transaction() as conn:
            first = conn.execute(
                text(
                    "INSERT INTO allowances (person, tokens, at) VALUES (:person, :count - 1, :now)"
                    " ON CONFLICT (person) DO NOTHING"
                ),
                params,
            )
            if first.rowcount:
                return 0.0
            # One statement: concurrent uploads of one person (on any gateway) take turns on
            # the row, and each sees the tokens the one before left.
            taken = conn.execute(
                text(
                    "UPDATE allowances SET at = :now, tokens = CASE"
                    " WHEN tokens + (:now - at) * :refill > :count THEN :count - 1"
                    " ELSE tokens + (:now - at) * :refill - 1 END"
                    " WHERE person = :person AND tokens + (:now - at) * :refill >= 1"
                ),
                params,
            )
            if taken.rowcount:
                return 0.0
            row = conn.execute(
                text("SELECT tokens, at FROM allowances WHERE person = :person"), params
            ).one()
        tokens = float(row.tokens) + (now - float(row.at)) * refill
        return max(0.001, (1 - tokens) / refill)


def _write_chunks(conn: Connection, blob: str, data: bytes) -> None:
    """``data`` into ``blob``'s chunks; each a view of ``data``, not a copy (the driver
    copies one chunk at a time)."""
    view = memoryview(data)
    for n, start in enumerate(range(0, max(len(data), 1), CHUNK_BYTES)):
        conn.execute(ADD_CHUNK, {"blob": blob, "n": n, "data": view[start : start + CHUNK_BYTES]})
