"""Poison messages, end to end with real processes: parked with the reason and the attempt
count while the stream flows on, kept by the deadletters service even when it was down,
listed and replayed by an operator with ``dovecote deadletter``.

The poison: a tally item (tests/services/tally) whose handler fails while a file exists;
the operator's "fix" is deleting the file, then replaying the letter.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from dovecote import activity as act
from dovecote.testing.plugin import Probe, StartService, TestBroker, wait_until
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
