"""Deadletters handlers: every dead letter kept; operators list and replay them.

| listens to                                        | publishes                       |
|---------------------------------------------------|---------------------------------|
| deadletter/{service} (persistent session)         | commands/{service}/redeliver    |
| commands/deadletters/list, commands/deadletters/replay | replies/deadletters/{request} |

A letter parked while no operator was watching is not lost: this service's persistent
session queues it while the service is down, and the store (``DEADLETTERS_DB``, SQLite)
keeps it until an operator looks (``dovecote deadletter list``).

A replay goes back to the one service that parked the letter, on its own command topic
(``commands/<service>/redeliver``), never to the original topic: the other subscribers of
that topic handled the message already, and this service's broker credentials may write
commands only, not events in another service's name (see docs/operating.md).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson

from dovecote import Bus, Delivery, Service, handles, topics
from dovecote import activity as act
from dovecote.config import Settings
from services.deadletters.store import Letter, Store

REPLAY_ALL_LIMIT = 1000  # letters one `replay --all` sends back


class DeadLetters(Service):
    name = "deadletters"
    eager_handlers = True  # SQLite is synchronous: handlers never suspend

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        path = settings.get_str("DEADLETTERS_DB", str(settings.data_dir / "deadletters.sqlite3"))
        self.store = Store(Path(path))

    async def setup(self) -> None:
        self.store.open()
        _, held = self.store.find(limit=1)
        self.log.info("dead-letter store %s: %d letters", self.store.path, held)

    async def teardown(self) -> None:
        self.store.close()

    @handles(topics.DEADLETTER)
    async def on_letter(self, letter: act.DeadLetter, delivery: Delivery) -> None:
        parked = letter.object
        kept = self.store.keep(
            Letter(
                id=letter.id,
                service=delivery.params["service"],
                topic=parked.name,
                reason=letter.summary or "",
                attempts=parked.attempts,
                size=parked.size,
                published=letter.published.isoformat(),
                letter=delivery.payload,
                replays=0,
                last_replayed=None,
            )
        )
        if kept:
            self.log.warning(
                "kept dead letter %s from %s on %s (%d attempts): %s",
                letter.id,
                delivery.params["service"],
                parked.name,
                parked.attempts,
                letter.summary,
            )

    @handles(topics.DEADLETTER_LIST)
    async def on_list(self, command: act.ListDeadLetters, _: Delivery) -> None:
        query = command.object
        letters, total = self.store.find(query.service, query.limit)
        self.reply(command, letters, total)

    @handles(topics.DEADLETTER_REPLAY)
    async def on_replay(self, command: act.ReplayDeadLetters, _: Delivery) -> None:
        wanted = command.object
        missing: list[str] = []
        if wanted.all:
            letters, _total = self.store.find(wanted.service, REPLAY_ALL_LIMIT, unreplayed=True)
        else:
            letters = []
            for letter_id in wanted.items:
                found = self.store.get(letter_id)
                if found is None:
                    missing.append(letter_id)
                else:
                    letters.append(found)
        for letter in letters:
            self.redeliver(command, letter)
        self.reply(command, [self.store.get(x.id) or x for x in letters], len(letters), missing)

    def redeliver(self, command: act.Activity, letter: Letter) -> None:
        redelivery = act.new(
            "Undo",
            self.bus.actor,
            orjson.loads(letter.letter),
            context=command.context or command.id,
        )
        # The same id if this command is itself redelivered: the service runs it once.
        redelivery["id"] = act.derived_id(command.id, letter.id)
        self.bus.publish(topics.REDELIVER, redelivery, service=letter.service)
        self.store.replayed(letter.id, act.now())
        self.log.info(
            "replayed %s to %s (%s) [context=%s]",
            letter.id,
            letter.service,
            letter.topic,
            redelivery["context"],
        )

    def reply(
        self,
        command: act.Activity,
        letters: list[Letter],
        total: int,
        missing: list[str] | None = None,
    ) -> None:
        try:
            request = uuid.UUID(command.id.removeprefix("urn:uuid:")).hex
        except ValueError:
            self.log.warning("command %s has no urn:uuid id: nowhere to answer", command.id)
            return
        report: dict[str, Any] = {
            "type": "OrderedCollection",
            "totalItems": total,
            "orderedItems": [summary(x) for x in letters],
        }
        if missing:
            report["missing"] = missing
        answer = act.new(
            "Reject" if missing else "Accept",
            self.bus.actor,
            report,
            context=command.context,
            inReplyTo=command.id,
        )
        self.bus.publish(topics.DEADLETTER_REPLY, answer, request=request)


def summary(letter: Letter) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "Flag",
        "id": letter.id,
        "service": letter.service,
        "topic": letter.topic,
        "summary": letter.reason[:4096],
        "attempts": letter.attempts,
        "size": letter.size,
        "published": letter.published,
        "replays": letter.replays,
    }
    if letter.last_replayed:
        out["lastReplayed"] = letter.last_replayed
    return out
