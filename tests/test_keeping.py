"""``dovecote.keeping.Record``: a service's effects keyed on their cause, kept across
restarts; and ``keeps_record``, which has the worker open and close it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dovecote import Delivery, Service, handles
from dovecote import activity as act
from dovecote.config import Settings
from dovecote.keeping import Record
from dovecote_testing.plugin import MemoryBus, wait_until
from services.gateway import topics as gateway_topics


def test_once_per_cause_kind_and_person_and_kept_after_closing(tmp_path: Path) -> None:
    record = Record(tmp_path / "x.sqlite3").open()
    assert record.once("urn:a", "upload", who="ada", data={"title": "cat"})
    assert not record.once("urn:a", "upload", who="ada")  # the same cause again: nothing
    assert record.once("urn:a", "badge", who="ada")  # another kind of effect of it
    assert record.once("urn:b", "upload", who="ada") and record.once("urn:c", "upload", "bob")
    record.close()
    again = Record(tmp_path / "x.sqlite3").open()  # a restart
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
    assert Record(tmp_path / "counter.record.sqlite3").open().count("start", who=ada["id"]) == 1


def test_a_service_without_keeps_record_has_none(tmp_path: Path) -> None:
    class Plain(Service):
        name = "plain"

    settings = Settings.from_env({"DOVECOTE_DATA_DIR": str(tmp_path)})
    with pytest.raises(AttributeError, match="keeps_record = True"):
        _ = Plain(None, settings).record  # type: ignore[arg-type]
