"""Deadletters handlers: every dead letter kept; operators list and replay them.

| listens to                                        | publishes                       |
|---------------------------------------------------|---------------------------------|
| deadletter/{service} (persistent session)         | commands/{service}/redeliver    |
| commands/deadletters/list, commands/deadletters/replay | replies/deadletters/{request} |

A letter parked while no operator was watching is not lost: this service's persistent
session queues it while the service is down, and the store (``store.py``:
``DEADLETTERS_DB``, a SQLite file, or the shared ``DATABASE_URL``) keeps it until an operator
looks (``dovecote deadletter list``), within its bounds: at most ``DEADLETTERS_MAX_BYTES``
of letters, none older than ``DEADLETTERS_MAX_AGE_SECONDS``; past either the oldest go
first, each drop logged and counted (``dropped_*_total``).

A replay goes back to the one service that parked the letter, on its own command topic
(``commands/<service>/redeliver``), never to the original topic: the other subscribers of
that topic handled the message already, and this service's broker credentials may write
commands only, not events in another service's name (see docs/operating.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import datetime

import msgspec

from dovecote import Bus, Delivery, Service, handles, topics
from dovecote import activity as act
from dovecote.config import Settings
from dovecote.store import place
from services.deadletters.store import DeadLetterStore, Dropped, Letter

REPLAY_ALL_LIMIT = 1000  # letters one `replay --all` sends back
MAX_BYTES = 64 * 1024**2  # DEADLETTERS_MAX_BYTES: a flood of junk fills this, not the disk
MAX_AGE = 30 * 86400  # DEADLETTERS_MAX_AGE_SECONDS: a month to look at a letter
KEPT = msgspec.json.Decoder(act.DeadLetter)  # a letter as its service parked it


class DeadLetters(Service):
    name = "deadletters"
    # A letter's handler starts at once and waits only for its commit, shared with the
    # other letters of the same read (store.py).
    eager_handlers = True

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        max_bytes = settings.get_int("DEADLETTERS_MAX_BYTES", MAX_BYTES, 65536, 2**40)
        max_age = settings.get_int("DEADLETTERS_MAX_AGE_SECONDS", MAX_AGE, 1, 10 * 365 * 86400)
        where = place(
            settings,
            DeadLetterStore.name,
            "DEADLETTERS_DB",
            settings.data_dir / "deadletters.sqlite3",
        )
        self.store = DeadLetterStore(where, max_bytes, max_age)
        self.dropped = {"bytes": 0, "age": 0}  # since this worker started
        self._expiry: asyncio.Task[None] | None = None

    async def setup(self) -> None:
        self.store.open()
        held, size = self.store.held()
        self.log.info(
            "dead-letter store %s: %d letters, %d bytes (at most %d bytes, %d s each)",
            self.store.place.shown,
            held,
            size,
            self.store.max_bytes,
            self.store.max_age,
        )
        self.forget(self.store.prune())
        self._expiry = asyncio.get_running_loop().create_task(self._expire())

    async def teardown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        self.store.close()

    async def _expire(self) -> None:
        """The age limit holds with no new letter arriving too."""
        every = min(60.0, self.store.max_age / 2)
        while True:
            await asyncio.sleep(every)
            try:
                self.forget(self.store.prune())
            except Exception:  # a busy file now is no reason to stop expiring later
                self.log.exception("expiring dead letters failed")

    def forget(self, dropped: list[Dropped]) -> None:
        """Count and log each letter the store let go."""
        now = time.time()
        for d in dropped:
            self.dropped[d.why] += 1
            why = (
                f"the store is over DEADLETTERS_MAX_BYTES ({self.store.max_bytes})"
                if d.why == "bytes"
                else f"older than DEADLETTERS_MAX_AGE_SECONDS ({self.store.max_age})"
            )
            self.log.warning(
                "dropped dead letter %s from %s on %s (%d bytes, kept %.0f s ago): %s",
                d.id,
                d.service,
                d.topic,
                d.bytes,
                now - d.kept_at,
                why,
            )

    def readings(self) -> Mapping[str, float]:
        held, size = self.store.held()
        return {
            "letters_held": held,
            "letters_held_bytes": size,
            "store_bytes": self.store.used_bytes(),  # what DEADLETTERS_MAX_BYTES bounds
            "dropped_over_bytes_total": self.dropped["bytes"],
            "dropped_over_age_total": self.dropped["age"],
        }

    @handles(topics.DEADLETTER)
    async def on_letter(self, letter: act.DeadLetter, delivery: Delivery) -> None:
        parked = letter.object
        kept, dropped = await self.store.add(
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
        self.forget(dropped)

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
        parked = KEPT.decode(letter.letter)
        redelivery = act.Redelivery(
            # The same id if this command is itself redelivered: the service runs it once.
            **act.envelope(act.derived_id(command.id, letter.id)),
            type="Undo",
            actor=self.bus.actor,
            object=msgspec.structs.replace(parked, published=act.Instant.of(parked.published)),
            context=command.context or command.id,
        )
        self.bus.publish(topics.REDELIVER, redelivery, service=letter.service)
        self.store.replayed(letter.id, act.now())
        self.log.info(
            "replayed %s to %s (%s) [context=%s]",
            letter.id,
            letter.service,
            letter.topic,
            redelivery.context,
        )

    def reply(
        self,
        command: act.Activity,
        letters: list[Letter],
        total: int,
        missing: list[str] | None = None,
    ) -> None:
        request = act.request_key(command.id)
        if request is None:
            self.log.warning("command %s has no urn:uuid id: nowhere to answer", command.id)
            return
        report = act.LetterReport(
            type="OrderedCollection",
            totalItems=total,
            orderedItems=[summary(x) for x in letters],
            missing=missing or [],
        )
        answer = act.DeadLetterReply(
            **act.envelope(),
            type="Reject" if missing else "Accept",
            actor=self.bus.actor,
            object=report,
            context=command.context,
            inReplyTo=command.id,
        )
        self.bus.publish(topics.DEADLETTER_REPLY, answer, request=request)


def summary(letter: Letter) -> act.LetterSummary:
    return act.LetterSummary(
        type="Flag",
        id=letter.id,
        service=letter.service,
        topic=letter.topic,
        summary=letter.reason[:4096],
        attempts=letter.attempts,
        size=letter.size,
        published=_stored(letter.published),
        replays=letter.replays,
        lastReplayed=_stored(letter.last_replayed) if letter.last_replayed else None,
    )


def _stored(moment: str) -> act.Instant:
    """A time the store keeps as text, to the millisecond (an HTML ``<time>`` shows it)."""
    return act.Instant.of(datetime.fromisoformat(moment.replace("Z", "+00:00")))
