"""Scores: each ``events/scores/set`` becomes the retained ``state/scores/{user}``.

Retained state on a topic with a parameter, as a service's card of a row per person would
have it: what a subscriber of the wildcard gets on a broker that sends retained messages
to exact subscriptions only (RabbitMQ) is the point of its test.
"""

from __future__ import annotations

from dovecote import Delivery, Service, handles, topics
from dovecote import activity as act

SET = topics.register(
    topics.Topic(
        "events/scores/set",
        "tests",
        1,
        False,
        act.Activity,
        "Test traffic: set a person's score (tests/services/scores).",
        actor="the test",
    )
)
SCORE = topics.register(
    topics.Topic(
        "state/scores/{user}",
        "scores",
        1,
        True,
        act.Activity,
        "Test state: a person's score, retained (tests/services/scores).",
        actor="the scores test service",
    )
)


class Scores(Service):
    name = "scores"

    @handles(SET)
    async def on_set(self, activity: act.Activity, _: Delivery) -> None:
        user = activity.object["user"]
        state = act.Activity(
            **act.envelope(act.derived_id(activity.id, "score")),
            type="Update",
            actor=self.bus.actor,
            object={"type": "Note", "content": user},
        )
        self.bus.publish(SCORE, state, user=user)
