"""Tally: each ``events/tally/item`` costs some work, then one row in a shared SQLite ledger.

The ledger is the idempotent store of the runtime's promise: a row per activity id (an
``INSERT ... ON CONFLICT``), with how many times a handler ran for it and which worker ran it
first. Tests read it to prove each item was handled, by whom, and how often.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from dovecote import Bus, Delivery, Service, handles, topics
from dovecote import activity as act
from dovecote.config import Settings
from tests.services.tally.ledger import open_ledger

ITEM = topics.register(
    topics.Topic(
        "events/tally/item",
        "tests",
        1,
        False,
        act.Activity,
        "Test traffic for worker pools (tests/services/tally).",
        actor="the test that sends the traffic",
    )
)


class Tally(Service):
    name = "tally"

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        self.ledger_path = settings.get_str("TALLY_DB", str(settings.data_dir / "tally.sqlite3"))
        self.work = settings.get_float("TALLY_WORK_SECONDS", 0.005, 0.0, 10.0)
        # A poison message for dead-letter tests: an item whose content is "poison" fails
        # while this file exists (the bug), and succeeds once it is gone (the fix).
        self.poison = Path(settings.get_str("TALLY_POISON_FILE", "/nonexistent/poison"))
        self.db: sqlite3.Connection | None = None

    async def setup(self) -> None:
        self.db = open_ledger(self.ledger_path)

    @handles(ITEM)
    async def on_item(self, activity: act.Activity, _: Delivery) -> None:
        await asyncio.sleep(self.work)  # the work: I/O-like, so three workers overlap
        obj = activity.object
        if isinstance(obj, dict) and obj.get("content") == "poison" and self.poison.exists():
            raise RuntimeError(f"poisoned while {self.poison} exists")
        assert self.db is not None
        self.db.execute(
            "INSERT INTO tally VALUES (?, ?, ?, 1) ON CONFLICT(id) DO UPDATE SET runs = runs + 1",
            (activity.id, self.bus.instance, os.getpid()),
        )

    async def teardown(self) -> None:
        if self.db is not None:
            self.db.close()
