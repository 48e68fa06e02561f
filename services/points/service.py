"""Points handlers: deeds in, awards and the leaderboard out.

| listens to                                  | publishes                                 |
|---------------------------------------------|-------------------------------------------|
| events/image/created, events/build/succeeded | events/points/awarded                    |
|                                             | state/leaderboard (retained)              |

The rules are in ``rules.py``; the ledger (``ledger.py``: ``POINTS_DB``, a SQLite file, or
the shared ``DATABASE_URL``) makes an award happen once per activity id, however often the
broker delivers it and whichever worker of the pool, on whichever machine, gets it.
"""

from __future__ import annotations

import asyncio

from dovecote import Bus, Delivery, Service, handles
from dovecote import activity as act
from dovecote.config import Settings
from services.points import rules
from services.points import topics as points_topics
from services.points.ledger import Award, Ledger

LEADERS = 10


class Points(Service):
    name = "points"
    # A deed's handler starts at once and waits only for its award's commit, shared with
    # the other deeds of the same read (ledger.py).
    eager_handlers = True

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        self.ledger = Ledger.at(settings, "POINTS_DB", settings.data_dir / "points.sqlite3")
        self._board_due: asyncio.Handle | None = None

    async def setup(self) -> None:
        self.ledger.open()
        self.log.info("ledger %s: %d awards", self.ledger.place.shown, self.ledger.count())
        # The retained leaderboard is rebuilt from the durable ledger, never the reverse.
        self.publish_leaderboard(None)

    async def teardown(self) -> None:
        if self._board_due is not None:
            self._board_due.cancel()
        self.ledger.close()

    @handles(*rules.TOPICS)
    async def on_deed(self, activity: act.Activity, delivery: Delivery) -> None:
        for rule, person in rules.earned(delivery.entry, activity):
            total = await self.ledger.award(
                Award(
                    activity.id,
                    rule.name,
                    person.id,
                    rule.points,
                    username=person.preferredUsername,
                    name=person.name,
                    context=activity.context,
                )
            )
            who = person.preferredUsername or person.id
            if total is None:
                self.log.info(
                    "%s for %s already counted [context=%s]", rule.name, who, activity.context
                )
                continue
            award = self.award(rule, activity, total)
            self.bus.publish(
                points_topics.POINTS_AWARDED,
                points_topics.PointsAwarded(
                    **act.envelope(),
                    type="Add",
                    actor=self.bus.actor,
                    object=award,
                    target=person,
                    context=activity.context,
                    summary=f"{person.name or who} {rule.summary}: +{rule.points}",
                ),
            )
            self.log.info(
                "+%d to %s for %s, total %d [context=%s]",
                rule.points,
                who,
                rule.name,
                total,
                activity.context,
            )
            self.leaderboard_changed(activity.context)

    def leaderboard_changed(self, context: str | None) -> None:
        """Publish the leaderboard once the awards of this turn are in: one board for a
        batch of awards, not one per award (each one a query of the whole ledger)."""
        if self._board_due is None:
            self._board_due = asyncio.get_running_loop().call_soon(self._publish_due, context)

    def _publish_due(self, context: str | None) -> None:
        self._board_due = None
        self.publish_leaderboard(context)

    def award(self, rule: rules.Rule, activity: act.Activity, total: int) -> points_topics.Award:
        """The award one rule gives for one deed. Its id derives from the cause, so a
        redelivered cause makes the same award. (tests/services/points_next, the next version
        of its test of a rolling upgrade, adds a field here.)"""
        return points_topics.Award(
            type="Award",
            id=act.derived_id(activity.id, rule.name),
            rule=rule.name,
            points=rule.points,
            total=total,
            cause=activity.id,
        )

    def republish_state(self) -> None:
        """Asked for the state (services/query): the leaderboard, from the durable ledger."""
        self.publish_leaderboard(None)

    def publish_leaderboard(self, context: str | None) -> None:
        leaders = self.ledger.leaderboard(LEADERS)
        board = points_topics.Leaderboard(
            type="OrderedCollection",
            totalItems=len(leaders),
            orderedItems=[
                points_topics.Standing(
                    type="Person",
                    id=s.person,
                    name=s.name,
                    preferredUsername=s.username,
                    points=s.points,
                )
                for s in leaders
            ],
        )
        self.bus.publish(
            points_topics.LEADERBOARD,
            points_topics.LeaderboardUpdated(
                **act.envelope(),
                type="Update",
                actor=self.bus.actor,
                object=board,
                context=context,
            ),
        )
