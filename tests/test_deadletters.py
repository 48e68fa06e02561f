"""Poison messages, end to end with real processes: parked with the reason and the attempt
count while the stream flows on, kept by the deadletters service even when it was down,
listed and replayed by an operator with ``dovecote deadletter`` (once: a second replay of
a letter is refused).

The poison: a tally item (tests/services/tally) whose handler fails while a file exists;
the operator's "fix" is deleting the file, then replaying the letter.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from dovecote import activity as act
from dovecote_testing.plugin import Probe, StartService, TestBroker, wait_until
from tests.chaos import FaultRow, record
from tests.fixtures import deadletter_cli
from tests.services.tally.ledger import open_ledger

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}
TALLY = "tests.services"


def item(content: str = "count me") -> dict[str, Any]:
    return act.new("Create", ADA, {"type": "Note", "content": content})


def ledger(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    db = open_ledger(str(path))
    try:
        return {r[0]: r[1] for r in db.execute("SELECT id, runs FROM tally")}
    finally:
        db.close()


def held_garbage(db: Path) -> list[int]:
    """The sequence numbers of the garbage (``NNNNNN`` + random bytes) whose letters the
    store holds, in order."""
    store = sqlite3.connect(db)
    try:
        rows = store.execute("SELECT letter FROM letters").fetchall()
    finally:
        store.close()
    return sorted(int(base64.b64decode(orjson.loads(r[0])["object"]["content"])[:6]) for r in rows)


def files_size(db: Path) -> tuple[int, int]:
    """Bytes of a SQLite store on disk: the file, and its write-ahead log."""
    return os.path.getsize(db), os.path.getsize(f"{db}-wal")


@pytest.mark.chaos
async def test_a_poison_message_is_parked_kept_listed_and_replayed_while_the_stream_flows(
    broker: TestBroker,
    start_service: StartService,
    service_env: dict[str, str],
    probe: Probe,
    tmp_path: Path,
) -> None:
    poison_file = tmp_path / "bug"
    poison_file.write_text("the handler fails while this file exists")
    db = tmp_path / "tally.sqlite"
    tally_env = {
        "TALLY_DB": str(db),
        "TALLY_WORK_SECONDS": "0.001",
        "TALLY_POISON_FILE": str(poison_file),
        "DOVECOTE_HANDLER_ATTEMPTS": "3",
    }
    start_service("tally", package=TALLY, **tally_env)
    keeper = start_service("deadletters")
    await probe.wait_online("tally")
    await probe.wait_online("deadletters")

    # 1. One poison in a stream of 200: parked after 3 attempts, the other 199 handled.
    good = [item() for _ in range(199)]
    first = item("poison")
    for a in [*good[:100], first, *good[100:]]:
        probe.publish("events/tally/item", a)
    [letter] = await probe.wait_for("deadletter/tally", timeout=60)
    assert letter["object"]["attempts"] == 3
    assert "poisoned while" in letter["summary"] and "RuntimeError" in letter["summary"]
    assert orjson.loads(letter["object"]["content"])["id"] == first["id"]
    assert letter["object"]["name"].endswith("/events/tally/item")
    await wait_until(lambda: len(ledger(db)) == 199, 60, "the rest of the stream")
    assert set(ledger(db)) == {a["id"] for a in good}

    # 2. A letter parked while the deadletters service is down is kept all the same.
    keeper.kill()
    second = item("poison")
    probe.publish("events/tally/item", second)
    await probe.wait_for("deadletter/tally", count=2, timeout=60)
    start_service("deadletters")
    await probe.wait_for(
        "services/deadletters/1", lambda a: a["type"] == "Join", count=2, timeout=30
    )

    env = {**service_env, "PYTHONPATH": os.getcwd()}
    ids = {letter["id"]}
    second_letter = probe.on("deadletter/tally")[1]
    ids.add(second_letter["id"])

    async def listed() -> dict[str, dict[str, object]]:
        code, out, err = await deadletter_cli(env, "list", "--json", "--service", "tally")
        assert code == 0, err
        return {r["id"]: r for r in orjson.loads(out)["orderedItems"]}

    deadline = asyncio.get_running_loop().time() + 30
    while set(held := await listed()) != ids:  # the second arrives when the keeper is back
        assert asyncio.get_running_loop().time() < deadline, held
        await asyncio.sleep(0.5)
    assert {r["attempts"] for r in held.values()} == {3}
    assert all(r["replays"] == 0 and r["topic"] == letter["object"]["name"] for r in held.values())
    code, text, _ = await deadletter_cli(env, "list")
    assert code == 0 and "2 letter(s)" in text and "3 attempt(s)" in text and "poisoned" in text

    # 3. The operator fixes the cause and replays both; each runs once, in tally only.
    poison_file.unlink()
    code, out, err = await deadletter_cli(env, "replay", letter["id"], second_letter["id"])
    assert code == 0, err
    assert "replayed 2 letter(s)" in out
    await wait_until(lambda: len(ledger(db)) == 201, 60, "the replayed items handled")
    runs = ledger(db)
    assert runs[first["id"]] == 1 and runs[second["id"]] == 1
    assert set(runs.values()) == {1}, "an item was handled twice"
    held = await listed()
    assert {r["replays"] for r in held.values()} == {1}
    assert len(probe.on("deadletter/tally")) == 2  # no new letter: the replays succeeded

    # 3b. Replayed a second time: tally runs a letter again once (dovecote.redelivery); it
    # refuses this one and parks the command with the reason, and nothing runs.
    code, out, err = await deadletter_cli(env, "replay", letter["id"])
    assert code == 0 and "replayed 1 letter(s)" in out, err
    [refused] = await probe.wait_for(
        "deadletter/tally", lambda a: "redelivered already" in a["summary"], timeout=30
    )
    assert refused["object"]["name"].endswith("/commands/tally/redeliver")
    assert ledger(db) == runs

    sent = {a["id"] for a in [*good, first, second]}
    record(
        FaultRow(
            "poison: 2 of 201 fail 3 times each, parked, kept, replayed after the fix "
            f"({broker.kind})",
            len(sent),
            len(set(runs) & sent),
            len(sent - set(runs)),
            sum(n - 1 for n in runs.values()),
            None,
        )
    )

    # 4. An unknown id is said to be unknown, and nothing is replayed.
    code, out, err = await deadletter_cli(
        env, "replay", "urn:uuid:00000000-0000-4000-8000-000000000000"
    )
    assert code == 1 and "not held" in err


@pytest.mark.brokers("mosquitto")
async def test_the_tool_says_so_when_no_deadletters_service_answers(
    service_env: dict[str, str],
) -> None:
    code, _, err = await deadletter_cli(service_env, "list", "--timeout", "1")
    assert code == 1 and "no answer from the deadletters service within 1 s" in err
    code, _, err = await deadletter_cli(service_env, "replay", "--service", "tally")
    assert code == 2 and "give letter ids, or --all" in err


def logged_drops(log: str) -> int:
    """Drops the log accounts for: one line each for the first few of a window, then one
    line that counts the rest (dovecote.logs.Repeats)."""
    said = summed = 0
    for line in log.splitlines():
        if "dropped dead letter" not in line:
            continue
        found = re.search(r"(\d+) more like this in", line)
        if found:
            summed += int(found[1])
        else:
            said += 1
    return said + summed


async def test_a_garbage_burst_on_the_broadcast_query_is_parked_once_within_the_cap(
    broker: TestBroker,
    start_service: StartService,
    probe: Probe,
    tmp_path: Path,
) -> None:
    """Issue 11: 10 MB of garbage on ``services/query`` in 0.4 s was parked by all 7
    services and grew the store by 70 MB. Now the keeper alone parks it (the others count
    it), and the store holds at most ``DEADLETTERS_MAX_BYTES``: the oldest dropped, each
    drop logged and counted."""
    cap, n, size = 1024**2, 1000, 10_000
    db = tmp_path / "deadletters.sqlite3"
    fast = {"DOVECOTE_METRICS_INTERVAL": "0.5"}
    keeper = start_service(
        "deadletters",
        DEADLETTERS_DB=str(db),
        DEADLETTERS_MAX_BYTES=str(cap),
        LOG_REPEATS="5/2",  # five lines a 2 s window, then one that counts the rest
        **fast,
    )
    others = ("points", "builder")  # every worker of every service gets the broadcast
    for name in others:
        start_service(name, **fast)
    for name in ("deadletters", *others):
        await probe.wait_online(name)

    began = time.monotonic()
    for i in range(n):  # not UTF-8: each letter holds it as base64, 13.3 KB
        probe.publish("services/query", f"{i:06d}".encode() + os.urandom(size - 6))
    assert await probe.conn.flush(30)
    sent_in = time.monotonic() - began

    def readings(service: str) -> dict[str, float]:
        reports = probe.on(f"metrics/{service}/1")
        return reports[-1]["object"]["readings"] if reports else {}

    def settled(report: dict[str, Any]) -> bool:
        r = report["object"]["readings"]
        return bool(r["letters_held"] + r["dropped_over_bytes_total"] >= n)

    await probe.wait_for("metrics/deadletters/1", settled, timeout=60)
    for name in others:  # counted, not parked
        await probe.wait_for(
            f"metrics/{name}/1",
            lambda a: a["object"]["readings"].get("queries_refused_total") == n,
            timeout=60,
        )
        assert probe.on(f"deadletter/{name}") == []
        assert probe.on(f"metrics/{name}/1")[-1]["object"]["parked"] == 0
    assert len(probe.on("deadletter/deadletters")) == n  # parked once, by the keeper
    kept = readings("deadletters")
    held, dropped = int(kept["letters_held"]), int(kept["dropped_over_bytes_total"])
    assert kept["letters_held_bytes"] <= cap and held > 0 and dropped == n - held

    # What is held is the newest: the oldest went first.
    assert held_garbage(db) == list(range(n - held, n))
    await wait_until(lambda: logged_drops(keeper.log) == dropped, 10, "logs")
    lines = keeper.log.count("dropped dead letter")
    assert lines < dropped / 10, f"{lines} lines for {dropped} drops: the log is unbounded"
    main, wal = files_size(db)
    largest = 14_000  # one letter: 10 KB of garbage as base64, and its envelope
    assert main <= cap + largest + 8 * 4096 and wal <= 2 * 1024**2  # one letter; the WAL
    print(
        f"{n} x {size} B garbage on services/query sent in {sent_in:.2f} s; kept {held} "
        f"letters ({kept['letters_held_bytes']:.0f} B, cap {cap}), dropped {dropped}; "
        f"the store's file {main} B, its WAL {wal} B ({broker.kind})"
    )
