"""``dovecote.keeping.Record``: a service's effects keyed on their cause, kept across
restarts (on SQLite and PostgreSQL); ``keeps_record``, which has the worker open and close
it; a record made by 8d385c8 adopted; the schema names of the services' stores."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from dovecote import Delivery, Service, handles
from dovecote import activity as act
from dovecote.config import Settings
from dovecote.keeping import Record
from dovecote.store import Place
from dovecote.store.names import schema_for
from dovecote_testing.plugin import Databases, MemoryBus, wait_until
from services.gateway import topics as gateway_topics


def test_once_per_cause_kind_and_person_and_kept_after_closing(databases: Databases) -> None:
    where = databases.place("record_x")
    record = Record(where, "record_x").open()
    assert record.once("urn:a", "upload", who="ada", data={"title": "cat"})
    assert not record.once("urn:a", "upload", who="ada")  # the same cause again: nothing
    assert record.once("urn:a", "badge", who="ada")  # another kind of effect of it
    assert record.once("urn:b", "upload", who="ada") and record.once("urn:c", "upload", "bob")
    record.close()
    again = Record(where, "record_x").open()  # a restart (or another machine)
    assert not again.once("urn:b", "upload", who="ada")
    assert again.count("upload") == 3 and again.count("upload", who="ada") == 2
    assert again.counts("upload") == {"ada": 2, "bob": 1}
    latest = again.latest("upload", who="ada")
    assert latest is not None and latest["cause"] == "urn:b" and latest["data"] is None
    first = again.latest("badge")
    assert first is not None and first["who"] == "ada"
    assert again.latest("nothing") is None
    again.close()


class Counter(Service):
    name = "counter"
    keeps_record = True

    @handles(gateway_topics.BUILD_START)
    async def on_start(self, start: gateway_topics.StartBuild, _: Delivery) -> None:
        self.record.once(start.id, "start", who=start.actor.id)


async def test_the_worker_opens_and_closes_a_service_s_record(
    memory_bus: MemoryBus, tmp_path: Path
) -> None:
    worker = await memory_bus.start(Counter, DOVECOTE_DATA_DIR=str(tmp_path))
    service = worker.service
    assert isinstance(service, Counter)
    ada = {"type": "Person", "id": "http://localhost:8080/users/ada"}
    start = act.new("Start", ada, {"type": "Build"})
    memory_bus.probe.publish(gateway_topics.BUILD_START.pattern, start)
    memory_bus.probe.publish(gateway_topics.BUILD_START.pattern, start)  # a copy
    await wait_until(lambda: service.record.count("start") == 1, 5, "the start recorded")
    assert (tmp_path / "counter.record.sqlite3").is_file()
    await memory_bus.stop(worker)
    with pytest.raises(AssertionError, match="open"):
        service.record.count("start")  # closed with the worker
    kept = Record(Place.file(tmp_path / "counter.record.sqlite3")).open()
    assert kept.count("start", who=ada["id"]) == 1
    kept.close()


def test_a_service_without_keeps_record_has_none(tmp_path: Path) -> None:
    class Plain(Service):
        name = "plain"

    settings = Settings.from_env({"DOVECOTE_DATA_DIR": str(tmp_path)})
    with pytest.raises(AttributeError, match="keeps_record = True"):
        _ = Plain(None, settings).record  # type: ignore[arg-type]


async def test_the_writes_of_one_turn_commit_together_each_told_if_it_was_new(
    databases: Databases,
) -> None:
    record = Record(databases.place("record_x"), "record_x").open()
    try:
        causes = [f"urn:{i % 20}" for i in range(30)]  # the last 10: copies
        news = await asyncio.gather(*(record.add(c, "upload", who="ada") for c in causes))
        assert news == [True] * 20 + [False] * 10
        assert record._group.commits == 1 and record.count("upload") == 20
    finally:
        record.close()


# The record as 8d385c8 made it (dovecote/keeping.py's SCHEMA).
MADE_BY_8D385C8 = """
CREATE TABLE IF NOT EXISTS record (
    cause TEXT NOT NULL,
    kind  TEXT NOT NULL,
    who   TEXT NOT NULL DEFAULT '',
    data  TEXT,
    at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (cause, kind, who)
);
CREATE INDEX IF NOT EXISTS record_kind_who ON record (kind, who);
"""


def test_a_record_made_by_8d385c8_is_adopted_nothing_lost(tmp_path: Path) -> None:
    path = tmp_path / "counter.record.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MADE_BY_8D385C8)
    at = "2026-12-01T10:00:00.000Z"  # the same instant: the latest is the last inserted
    for cause, who, data in [
        ("urn:b", "ada", None),
        ("urn:a", "ada", '{"n": 1}'),
        ("urn:c", "", None),
    ]:
        old.execute(
            "INSERT INTO record (cause, kind, who, data, at) VALUES (?, 'upload', ?, ?, ?)",
            (cause, who, data, at),
        )
    old.execute("INSERT INTO record (cause, kind) VALUES ('urn:d', 'badge')")  # at: defaulted
    old.commit()
    old.close()
    record = Record(Place.file(path)).open()
    try:
        assert record.counts("upload") == {"": 1, "ada": 2} and record.count("badge") == 1
        latest = record.latest("upload", who="ada")
        assert latest == {"cause": "urn:a", "who": "ada", "data": {"n": 1}, "at": at}
        badge = record.latest("badge")
        assert badge is not None and badge["at"].endswith("Z")
        assert not record.once("urn:b", "upload", who="ada")  # still known: kept once
        assert record.once("urn:e", "upload", who="ada")
        assert record.latest("upload", who="ada")["cause"] == "urn:e"  # type: ignore[index]
    finally:
        record.close()


def test_each_service_has_a_schema_of_its_own_whatever_its_name() -> None:
    names = ["points", "points-next", "points_next", "points__next", "Points", "a" * 64]
    schemas = [schema_for("record", n) for n in names]
    assert schemas[:2] == ["record_points", "record_points_2dnext"]
    assert len(set(schemas)) == len(names)
    assert all(Place.postgres("postgresql://h/d", s).schema == s for s in schemas)
    assert len(schemas[-1]) == 63 and schema_for("record", "a" * 65) != schemas[-1]
