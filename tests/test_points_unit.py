"""The points rules and the SQLite ledger, called directly (a real file, no broker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dovecote import activity as act
from dovecote import topics
from services.builder import topics as builder_topics
from services.gateway import topics as gateway_topics
from services.points import rules
from services.points.ledger import Ledger

ADA = {
    "type": "Person",
    "id": "http://gw/users/ada",
    "name": "Ada Lovelace",
    "preferredUsername": "ada",
}
IMAGE = {
    "type": "Image",
    "id": "http://gw/images/abc",
    "url": "http://gw/images/abc",
    "mediaType": "image/jpeg",
    "name": "cat",
    "width": 10,
    "height": 10,
    "size": 100,
}


def decoded(entry: topics.Topic, activity: dict[str, Any]) -> Any:
    return entry.codec.decode(act.encode(activity))


def build(state: str, by: dict[str, Any] | None = ADA) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "Build",
        "id": act.new_id(),
        "name": "Build #1",
        "state": state,
        "progress": 100,
    }
    if by is not None:
        obj["attributedTo"] = by
    return act.new("Update", act.service("builder"), obj)


def test_an_upload_earns_the_uploader_10() -> None:
    a = decoded(gateway_topics.IMAGE_CREATED, act.new("Create", ADA, IMAGE))
    [(rule, person)] = rules.earned(gateway_topics.IMAGE_CREATED, a)
    assert (rule.name, rule.points, person.id) == ("upload", 10, ADA["id"])


def test_a_successful_build_earns_whoever_asked_5_and_a_failed_one_nothing() -> None:
    ok = decoded(builder_topics.BUILD_SUCCEEDED, build("succeeded"))
    [(rule, person)] = rules.earned(builder_topics.BUILD_SUCCEEDED, ok)
    assert (rule.name, rule.points, person.preferredUsername) == ("build", 5, "ada")
    failed = decoded(builder_topics.BUILD_FAILED, build("failed"))
    assert rules.earned(builder_topics.BUILD_FAILED, failed) == []
    anonymous = decoded(builder_topics.BUILD_SUCCEEDED, build("succeeded", by=None))
    assert rules.earned(builder_topics.BUILD_SUCCEEDED, anonymous) == []


def test_services_never_earn_points() -> None:
    a = decoded(gateway_topics.IMAGE_CREATED, act.new("Create", act.service("bot"), IMAGE))
    assert rules.earned(gateway_topics.IMAGE_CREATED, a) == []


def test_the_ledger_counts_an_activity_once_even_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "points.sqlite3"
    ledger = Ledger(path).open()
    assert ledger.record("urn:uuid:1", "upload", ADA["id"], 10, username="ada") == 10
    assert ledger.record("urn:uuid:1", "upload", ADA["id"], 10, username="ada") is None
    assert ledger.record("urn:uuid:2", "build", ADA["id"], 5, username="ada") == 15
    ledger.close()
    again = Ledger(path).open()  # a restarted service, the same file
    assert again.record("urn:uuid:1", "upload", ADA["id"], 10) is None
    assert again.total(ADA["id"]) == 15 and again.count() == 2
    again.close()


def test_the_leaderboard_is_sorted_with_latest_names(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "p.sqlite3").open()
    ledger.record("urn:uuid:1", "upload", "http://gw/users/grace", 10, name="Grace")
    ledger.record("urn:uuid:2", "upload", "http://gw/users/ada", 10, name="Ada")
    ledger.record("urn:uuid:3", "build", "http://gw/users/ada", 5, name="Ada L.")
    board = ledger.leaderboard(10)
    assert [(s.person.rsplit("/", 1)[1], s.name, s.points) for s in board] == [
        ("ada", "Ada L.", 15),
        ("grace", "Grace", 10),
    ]
    assert len(ledger.leaderboard(1)) == 1
    ledger.close()
