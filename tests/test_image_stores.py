"""The image stores, files and the shared database (on SQLite and a private PostgreSQL):
the same calls, the same answers; and the upload allowance the database keeps per person."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dovecote.errors import StoreUnavailable
from dovecote.store import Place
from dovecote_testing.plugin import Databases
from dovecote_testing.postgres import PrivatePostgres
from services.gateway.images.copy_in import copy_in
from services.gateway.images.database import DatabaseImages
from services.gateway.images.files import FileImages
from services.gateway.images.store import CHUNK_BYTES, ImageStore, NotFound, new_id, read_all


@pytest.fixture(
    params=["files", "sqlite", pytest.param("postgresql", marks=pytest.mark.real_broker)]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ImageStore]:
    """Files under a folder; or the database, on SQLite and on PostgreSQL (as ``databases``
    places them)."""
    opened: ImageStore
    if request.param == "files":
        opened = FileImages(tmp_path / "images").open()
    elif request.param == "sqlite":
        opened = DatabaseImages(Databases("sqlite", tmp_path).place("images")).open()
    else:
        server: PrivatePostgres = request.getfixturevalue("postgres")
        where = Databases("postgresql", tmp_path, server.new_database()).place("images")
        opened = DatabaseImages(where).open()
    yield opened
    opened.close()


def record(image_id: str) -> dict[str, str]:
    return {"id": f"http://x/images/{image_id}", "published": "2026-12-07T11:00:00.000Z"}


def test_a_stored_image_reads_back_whole_and_its_thumbnail_is_replaced(
    store: ImageStore,
) -> None:
    image_id = new_id()
    data = os.urandom(2 * CHUNK_BYTES + 1234)  # three chunks, the last a short one
    store.save_original(image_id, "jpg", data, record(image_id))
    found = store.original(image_id)
    assert found is not None and (found.media_type, found.size) == ("image/jpeg", len(data))
    assert read_all(store, found) == data
    assert store.chunk(found, 3) == b""
    store.save_thumbnail(image_id, 128, "jpg", b"small")
    store.save_thumbnail(image_id, 128, "webp", b"smaller")  # replaces, not beside
    store.save_thumbnail(image_id, 512, "jpg", b"larger")
    thumb = store.thumbnail(image_id, 128)
    assert thumb is not None and thumb.media_type == "image/webp"
    assert read_all(store, thumb) == b"smaller"
    assert store.thumbnail(image_id, 256) is None
    assert store.thumbnail_sizes(image_id) == [128, 512]
    other = new_id()
    assert store.sizes_of([image_id, other]) == {image_id: [128, 512], other: []}
    assert store.sizes_of([]) == {}
    assert store.recent(5) == [record(image_id)] and store.record(image_id) == record(image_id)
    if isinstance(store, FileImages):
        assert not [p for p in store.files() if p.name.startswith(".tmp")]
    store.discard_original(image_id)
    assert store.original(image_id) is None and store.recent(5) == []
    assert store.record(image_id) is None


def test_an_empty_file_is_stored_and_read_as_empty(store: ImageStore) -> None:
    image_id = new_id()
    store.save_original(image_id, "png", b"", record(image_id))
    found = store.original(image_id)
    assert found is not None and found.size == 0 and read_all(store, found) == b""


def test_pages_and_neighbours_go_newest_first(store: ImageStore) -> None:
    ids = [new_id() for _ in range(5)]
    for image_id in ids:
        store.save_original(image_id, "gif", b"GIF89a", record(image_id))
        if isinstance(store, FileImages):  # the files' order is their records' mtime
            meta = store.originals / f"{image_id}.json"
            stamp = 1_700_000_000_000_000_000 + ids.index(image_id) * 10**9
            os.utime(meta, ns=(stamp, stamp))
    newest = ids[::-1]
    first, more = store.page(None, 2)
    assert [r["id"].rsplit("/", 1)[1] for r in first] == newest[:2] and more
    rest, more = store.page(newest[1], 10)
    assert [r["id"].rsplit("/", 1)[1] for r in rest] == newest[2:] and not more
    assert store.neighbours(newest[2]) == (newest[1], newest[3])
    assert store.neighbours(newest[0]) == (None, newest[1])
    assert store.neighbours(new_id()) == (None, None)
    with pytest.raises(NotFound):
        store.page(new_id(), 2)


def test_a_thumbnail_of_no_image_is_not_found(store: ImageStore) -> None:
    with pytest.raises(NotFound):
        store.save_thumbnail(new_id(), 128, "jpg", b"small")
    assert store.original(new_id()) is None and store.thumbnail_sizes(new_id()) == []


def test_every_gateway_counts_a_persons_uploads_against_one_allowance(
    databases: Databases,
) -> None:
    where = databases.place("images")
    a, b = DatabaseImages(where).open(), DatabaseImages(where).open()  # two gateways
    try:
        t = 1_800_000_000.0
        # 3 in a burst, then one every 20 s: A, B and A use the burst up; 0.1 is back at
        # t + 2, so the 4th waits 18 s.
        assert [a.take_upload("ada", 3, 60, t), b.take_upload("ada", 3, 60, t)] == [0, 0]
        assert a.take_upload("ada", 3, 60, t + 1) == 0
        assert b.take_upload("ada", 3, 60, t + 2) == pytest.approx(18, abs=0.01)
        assert b.take_upload("grace", 3, 60, t + 2) == 0  # each person their own
        assert a.take_upload("ada", 3, 60, t + 21) == 0  # refilled one
        assert a.take_upload("ada", 3, 60, t + 22) > 0
        assert b.take_upload("ada", 3, 60, t + 1000) == 0  # full again, never over 3
        assert [a.take_upload("ada", 3, 60, t + 1000) for _ in range(3)][-1] > 0
    finally:
        a.close()
        b.close()


def test_a_database_out_of_reach_is_unavailable_not_an_error(tmp_path: Path) -> None:
    # A port nothing listens on: the gateway answers 503 (its middleware), not 500.
    where = Place.postgres("postgresql://nobody:x@127.0.0.1:9/none", "images")
    with pytest.raises(StoreUnavailable):
        DatabaseImages(where).open()


def test_photos_kept_as_files_are_copied_into_the_database_once_in_order(
    databases: Databases, tmp_path: Path
) -> None:
    files = FileImages(tmp_path / "images").open()
    ids = [new_id() for _ in range(3)]
    for n, image_id in enumerate(ids):
        files.save_original(image_id, "jpg", os.urandom(CHUNK_BYTES + n), record(image_id))
        stamp = 1_700_000_000_000_000_000 + n * 10**9
        os.utime(files.originals / f"{image_id}.json", ns=(stamp, stamp))
    files.save_thumbnail(ids[0], 128, "webp", b"small")
    shared = DatabaseImages(databases.place("images")).open()
    try:
        assert copy_in(files, shared) == (3, 0)
        assert copy_in(files, shared) == (0, 3)  # again: nothing twice
        assert shared.recent(5) == files.recent(5)  # the same order, the same records
        for image_id in ids:
            found, kept = shared.original(image_id), files.original(image_id)
            assert found is not None and kept is not None and kept.path is not None
            assert read_all(shared, found) == kept.path.read_bytes()
        thumb = shared.thumbnail(ids[0], 128)
        assert thumb is not None and thumb.media_type == "image/webp"
        assert read_all(shared, thumb) == b"small"
    finally:
        shared.close()
