"""The redelivery key and record (``dovecote.redelivery``), without a broker: in files, and
in the shared database (``databases``); a record made by 8d385c8 adopted."""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import orjson
import pytest

from dovecote import activity as act
from dovecote import letters, redelivery, redelivery_record
from dovecote.config import ConfigError, Settings
from dovecote.dedupe import SeenIds
from dovecote.mqtt import Message
from dovecote.store import Place
from dovecote_testing.plugin import Databases

POINTS = act.service("points")
TOPIC = "dovecote/events/image/created"


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"DOVECOTE_DATA_DIR": str(tmp_path), **env})


def test_the_key_is_made_once_per_service_mode_0600_and_shared_by_its_workers(
    tmp_path: Path,
) -> None:
    first = redelivery.load_key(settings(tmp_path), "points")
    path = tmp_path / "redelivery" / "points.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    assert redelivery.load_key(settings(tmp_path), "points") == first  # a second worker
    assert redelivery.load_key(settings(tmp_path), "builder") != first
    assert sorted(p.name for p in path.parent.iterdir()) == ["builder.key", "points.key"]
    elsewhere = settings(tmp_path, DOVECOTE_REDELIVERY_DIR=str(tmp_path / "keys"))
    assert redelivery.load_key(elsewhere, "points") != first
    assert (tmp_path / "keys" / "points.key").exists()


def test_a_key_from_the_environment_wins_and_a_short_or_damaged_one_is_refused(
    tmp_path: Path,
) -> None:
    copied = "0123456789abcdef" * 4
    assert redelivery.load_key(settings(tmp_path, DOVECOTE_REDELIVERY_KEY=copied), "x") == (
        copied.encode()
    )
    assert not (tmp_path / "redelivery").exists()
    with pytest.raises(ConfigError, match="32 characters or more"):
        redelivery.load_key(settings(tmp_path, DOVECOTE_REDELIVERY_KEY="short"), "x")
    damaged = tmp_path / "redelivery" / "points.key"
    damaged.parent.mkdir()
    damaged.write_text("\n")
    with pytest.raises(ConfigError, match="damaged"):
        redelivery.load_key(settings(tmp_path), "points")


def test_a_signed_letter_passes_and_any_change_to_it_fails(tmp_path: Path) -> None:
    seal = redelivery.Seal.for_service(settings(tmp_path), "points")
    payload = b'{"not": "an upload"}'
    flag = act.to_json(letters.letter(POINTS, TOPIC, payload, "why", 1, 4096, seal.sign))

    def check(changed: dict[str, object], body: bytes = payload) -> str | None:
        return seal.forged(act.Codec(act.DeadLetter).decode(orjson.dumps(changed)), body)

    assert check(flag) is None
    assert "does not match" in (check(flag, b'{"not": "an upload!"}') or "")
    assert "does not match" in (check(flag | {"id": act.new_id()}) or "")
    moved = flag | {"object": flag["object"] | {"name": "dovecote/events/build/succeeded"}}
    assert "does not match" in (check(moved) or "")
    assert "unsigned" in (check({k: v for k, v in flag.items() if k != "signature"}) or "")
    other = redelivery.Seal.for_service(settings(tmp_path), "builder")
    assert "does not match" in (
        other.forged(act.Codec(act.DeadLetter).decode(act.encode(flag)), payload) or ""
    )


def test_a_letter_is_claimed_once_and_the_record_outlives_the_worker(tmp_path: Path) -> None:
    seal = redelivery.Seal.for_service(settings(tmp_path), "points")
    assert seal.claim("urn:uuid:letter", "urn:uuid:first") is None
    assert seal.claim("urn:uuid:letter", "urn:uuid:second") == "urn:uuid:first"
    seal.close()
    again = redelivery.Seal.for_service(settings(tmp_path), "points")  # restarted
    assert again.claim("urn:uuid:letter", "urn:uuid:third") == "urn:uuid:first"
    assert again.claim("urn:uuid:other", "urn:uuid:third") is None
    again.close()


def test_with_a_database_the_key_and_record_are_one_for_every_machine(
    databases: Databases, tmp_path: Path
) -> None:
    """Two machines (their own data folders): with DATABASE_URL the first worker's key is
    every worker's, and a letter claimed on one is claimed on the other; without it, each
    machine has its file (today's behaviour: copy the key by hand)."""
    a = settings(tmp_path / "a", **databases.env)
    b = settings(tmp_path / "b", **databases.env)
    shared = databases.kind == "postgresql"
    key_a = redelivery.load_key(a, "points-next")
    assert len(key_a) == 64 and redelivery.load_key(a, "points-next") == key_a
    assert (redelivery.load_key(b, "points-next") == key_a) is shared
    assert redelivery.load_key(b, "points") != key_a  # a key per service
    assert (tmp_path / "a" / "redelivery" / "points-next.key").exists() is not shared
    on_a, on_b = (redelivery.Seal.for_service(s, "points-next") for s in (a, b))
    try:
        assert on_a.claim("urn:uuid:letter", "urn:uuid:first") is None
        assert on_b.claim("urn:uuid:letter", "urn:uuid:second") == (
            "urn:uuid:first" if shared else None
        )
    finally:
        on_a.close()
        on_b.close()


def test_a_key_kept_in_the_database_is_the_first_writer_s(databases: Databases) -> None:
    first = redelivery_record.Record(databases.place("redelivery_x"), "redelivery_x").open()
    second = redelivery_record.Record(databases.place("redelivery_x"), "redelivery_x").open()
    try:
        key = first.key()
        assert second.key() == key and first.key() == key and len(key) == 64
    finally:
        first.close()
        second.close()


def test_a_record_made_by_8d385c8_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "redelivery" / "points.redelivered.sqlite3"
    path.parent.mkdir()
    old = sqlite3.connect(path)
    old.executescript(  # dovecote/redelivery.py's SCHEMA at 8d385c8
        """
        CREATE TABLE IF NOT EXISTS redelivered (
            letter  TEXT PRIMARY KEY,
            command TEXT NOT NULL,
            at      TEXT NOT NULL
        );
        INSERT INTO redelivered VALUES ('urn:uuid:letter', 'urn:uuid:first', '2026-12-01');
        """
    )
    old.commit()
    old.close()
    seal = redelivery.Seal.for_service(settings(tmp_path), "points")
    try:
        assert seal.claim("urn:uuid:letter", "urn:uuid:second") == "urn:uuid:first"
        assert seal.claim("urn:uuid:other", "urn:uuid:second") is None
    finally:
        seal.close()
    record = redelivery_record.Record(Place.file(path)).open()
    try:
        assert record.claim("urn:uuid:other", "urn:uuid:third") == "urn:uuid:second"
    finally:
        record.close()


def test_with_its_database_out_of_reach_a_letter_is_not_run_and_stays_replayable(
    tmp_path: Path,
) -> None:
    """The record cannot say whether the letter ran before: it is not run now, the command
    is parked with the reason, and the letter is left unclaimed for a later replay."""
    root = "t"
    key = b"k" * 64
    gone = Place.postgres("postgresql://dovecote@127.0.0.1:1/dovecote", "redelivery_points")
    seal = redelivery.Seal("points", key, redelivery_record.Record(gone, "redelivery_points"))
    topic = f"{root}/events/image/created"
    payload = act.encode(act.new("Create", POINTS, {"type": "Note", "content": "x"}))
    flag = letters.letter(POINTS, topic, payload, "why", 1, 65536, seal.sign)
    undo = act.new("Undo", act.service("deadletters"), act.to_json(flag))
    mine = redelivery.Redeliveries(
        "points", root, seal, SeenIds(), lambda t: t == topic, logging.getLogger("test")
    )
    message = Message(mine.topic, act.encode(undo), 1, False, 1)
    try:
        refused = mine.unpark(message)
    finally:
        seal.close()
    assert isinstance(refused, str) and "not redelivered now" in refused, refused
    assert "redelivery_points store is unavailable" in refused
