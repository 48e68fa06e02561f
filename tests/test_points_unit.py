"""The points rules and the ledger, called directly (a SQLite file and a private PostgreSQL,
no broker)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from dovecote import activity as act
from dovecote import topics
from dovecote.store import Place
from dovecote_testing.plugin import Databases
from services.builder import topics as builder_topics
from services.gateway import topics as gateway_topics
from services.points import rules
from services.points.ledger import Award, Ledger

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


def test_the_ledger_counts_an_activity_once_even_across_reopening(databases: Databases) -> None:
    where = databases.place("points")
    ledger = Ledger(where).open()
    assert ledger.record(Award("urn:uuid:1", "upload", ADA["id"], 10, username="ada")) == 10
    assert ledger.record(Award("urn:uuid:1", "upload", ADA["id"], 10, username="ada")) is None
    assert ledger.record(Award("urn:uuid:2", "build", ADA["id"], 5, username="ada")) == 15
    ledger.close()
    again = Ledger(where).open()  # a restarted service (or another machine), the same store
    assert again.record(Award("urn:uuid:1", "upload", ADA["id"], 10)) is None
    assert again.total(ADA["id"]) == 15 and again.count() == 2
    again.close()


def test_the_leaderboard_is_sorted_with_latest_names(databases: Databases) -> None:
    ledger = Ledger(databases.place("points")).open()
    ledger.record(Award("urn:uuid:1", "upload", "http://gw/users/grace", 10, name="Grace"))
    ledger.record(Award("urn:uuid:2", "upload", "http://gw/users/ada", 10, name="Ada"))
    ledger.record(Award("urn:uuid:3", "build", "http://gw/users/ada", 5, name="Ada L."))
    board = ledger.leaderboard(10)
    assert [(s.person.rsplit("/", 1)[1], s.name, s.points) for s in board] == [
        ("ada", "Ada L.", 15),
        ("grace", "Grace", 10),
    ]
    assert len(ledger.leaderboard(1)) == 1
    ledger.close()


async def test_awards_of_one_turn_commit_together_each_with_its_own_total(
    databases: Databases,
) -> None:
    ledger = Ledger(databases.place("points")).open()
    try:
        awards = [Award(f"urn:uuid:{i % 30}", "upload", ADA["id"], 10) for i in range(40)]
        totals = await asyncio.gather(*(ledger.award(a) for a in awards))
        # One commit for the 40; the first 30 counted in order, the 10 repeats not at all.
        assert ledger._group.commits == 1
        assert totals == [10 * (i + 1) for i in range(30)] + [None] * 10
        assert ledger.count() == 30
    finally:
        ledger.close()


async def test_a_failing_award_fails_alone_and_the_others_of_its_turn_commit(
    databases: Databases,
) -> None:
    ledger = Ledger(databases.place("points")).open()
    try:
        bad = Award("urn:uuid:bad", "upload", ADA["id"], 10)
        object.__setattr__(bad, "points", None)  # NOT NULL: the database refuses this one
        outcome = await asyncio.gather(
            ledger.award(Award("urn:uuid:1", "upload", ADA["id"], 10)),
            ledger.award(bad),
            ledger.award(Award("urn:uuid:2", "upload", ADA["id"], 10)),
            return_exceptions=True,
        )
        assert outcome[0] == 10 and outcome[2] == 20, outcome
        assert isinstance(outcome[1], IntegrityError), outcome
        assert ledger.count() == 2
    finally:
        ledger.close()


# The ledger as 8d385c8 (before migrations) made it: its own CREATE statements, verbatim.
GRACE = "http://gw/users/grace"
LEDGER_BEFORE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS awards (
    cause      TEXT NOT NULL,     -- the id of the activity that earned it
    rule       TEXT NOT NULL,
    person     TEXT NOT NULL,     -- the person's AS2 id (a URL)
    username   TEXT,
    name       TEXT,
    points     INTEGER NOT NULL,
    context    TEXT,
    awarded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (cause, rule)
);
CREATE INDEX IF NOT EXISTS awards_person ON awards (person);
"""


def test_a_ledger_made_before_migrations_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "points.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(LEDGER_BEFORE_MIGRATIONS)
    rows = [
        ("urn:uuid:1", "upload", "http://gw/users/grace", "grace", "Grace", 10),
        ("urn:uuid:2", "upload", "http://gw/users/ada", "ada", "Ada", 10),
        ("urn:uuid:3", "build", "http://gw/users/ada", "ada", "Ada L.", 5),
    ]
    old.executemany(
        "INSERT INTO awards (cause, rule, person, username, name, points) VALUES (?,?,?,?,?,?)",
        rows,
    )
    old.commit()
    old.close()

    ledger = Ledger(Place.file(path)).open()
    try:
        assert ledger.count() == 3
        # Ties still go to who got there first (the old rowid order became the id order).
        ledger.record(Award("urn:uuid:4", "build", GRACE, 5, username="grace", name="Grace"))
        board = [(s.username, s.name, s.points) for s in ledger.leaderboard()]
        assert board == [("grace", "Grace", 15), ("ada", "Ada L.", 15)]
        assert ledger.record(Award("urn:uuid:1", "upload", "http://gw/users/grace", 10)) is None
    finally:
        ledger.close()
    again = Ledger(Place.file(path)).open()  # at head now: opening again changes nothing
    try:
        assert again.count() == 4
    finally:
        again.close()
