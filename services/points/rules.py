"""The rules of the game, in one place: which event earns whom how many points.

Pure: a rule looks at a decoded activity and names the person who earned it (or nobody).
A new rule is one line here (and, for a new topic, one topic in ``Points``' handler).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dovecote import activity as act
from dovecote.topics import Topic
from services.builder import topics as builder_topics
from services.gateway import topics as gateway_topics


@dataclass(frozen=True)
class Rule:
    name: str
    points: int
    topic: Topic
    earner: Callable[[Any], act.Actor | None]  # who earned it, from the activity
    summary: str


def _actor(activity: act.Activity) -> act.Actor | None:
    return activity.actor


def _requester(activity: builder_topics.BuildUpdated) -> act.Actor | None:
    return activity.object.attributedTo


RULES = [
    Rule("upload", 10, gateway_topics.IMAGE_CREATED, _actor, "uploaded an image"),
    Rule("build", 5, builder_topics.BUILD_SUCCEEDED, _requester, "ran a build that succeeded"),
]
TOPICS = sorted({r.topic for r in RULES}, key=lambda t: t.pattern)


def earned(topic: Topic | None, activity: act.Activity) -> list[tuple[Rule, act.Actor]]:
    """Every (rule, person) this activity on this topic earns: people only, never services."""
    found = []
    for rule in RULES:
        if rule.topic is topic:
            person = rule.earner(activity)
            if person is not None and person.type == "Person":
                found.append((rule, person))
    return found
