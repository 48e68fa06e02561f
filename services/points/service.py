"""Points handlers: deeds in, awards and the leaderboard out.

| listens to                                  | publishes                                 |
|---------------------------------------------|-------------------------------------------|
| events/image/created, events/build/succeeded | events/points/awarded                    |
|                                             | state/leaderboard (retained)              |

The rules are in ``rules.py``; the ledger (``POINTS_DB``, SQLite) makes an award happen
once per activity id, however often the broker delivers it.
"""

from __future__ import annotations

from pathlib import Path

from dovecote import Bus, Delivery, Service, handles
from dovecote import activity as act
from dovecote.config import Settings
from services.points import rules
from services.points import topics as points_topics
from services.points.ledger import Ledger

LEADERS = 10


class Points(Service):
    name = "points"
    eager_handlers = True  # SQLite is synchronous: handlers never suspend

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        path = settings.get_str("POINTS_DB", str(settings.data_dir / "points.sqlite3"))
        self.ledger = Ledger(Path(path))

    async def setup(self) -> None:
        self.ledger.open()
        self.log.info("ledger %s: %d awards", self.ledger.path, self.ledger.count())
        # The retained leaderboard is rebuilt from the durable ledger, never the reverse.
        self.publish_leaderboard(None)

    async def teardown(self) -> None:
        self.ledger.close()

    @handles(*rules.TOPICS)
    async def on_deed(self, activity: act.Activity, delivery: Delivery) -> None:
        for rule, person in rules.earned(delivery.entry, activity):
            total = self.ledger.record(
                activity.id,
                rule.name,
                person.id,
                rule.points,
                username=person.preferredUsername,
                name=person.name,
                context=activity.context,
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
            self.publish_leaderboard(activity.context)

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
