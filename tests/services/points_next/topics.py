"""The next version of the points service's contract: services/points/topics.py as the next
release has it, an award gaining one optional field (``awardedAt``). Everything else is the
same, topic for topic; a reader of the old contract ignores the field it does not know.

A copy, not an import: importing services/points/topics.py would register the old payload
for the same pattern, which the registry refuses in one process. Old and new run in
different processes, as in a real rolling upgrade.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta

from dovecote.activity import Activity, Actor, Iri, Model, Name, doc
from dovecote.topics import Topic, register


class Award(Model):
    type: Literal["Award"]
    id: Annotated[
        Iri,
        doc("The award's IRI, derived from its cause: a redelivered cause makes the same award."),
    ]
    rule: Annotated[
        Name,
        doc("Which rule of the points service gave it (`upload`, `build`)."),
    ]
    points: Annotated[
        int,
        doc("Points given."),
    ]
    total: Annotated[
        int,
        doc("The person's total after this award."),
    ]
    cause: Annotated[
        Iri,
        doc("The id of the activity that earned it."),
    ]
    awardedAt: Annotated[
        datetime | None,
        doc("When the ledger recorded it (new in this version: optional, so old readers cope)."),
    ] = None


class PointsAwarded(Activity):
    """``target`` is the person who earned the points."""

    type: Literal["Add"]
    object: Annotated[
        Award,
        doc("The award."),
    ]
    target: Annotated[
        Actor,
        doc("The person who earned the points."),
    ]


class Standing(Model):
    type: Literal["Person"]
    id: Annotated[
        Iri,
        doc("The person's actor IRI."),
    ]
    points: Annotated[
        int,
        doc("Their total."),
    ]
    name: Annotated[
        Name | None,
        doc("Display name."),
    ] = None
    preferredUsername: Annotated[
        Name | None,
        doc("Their user id."),
    ] = None


class Leaderboard(Model):
    type: Literal["OrderedCollection"]
    totalItems: Annotated[
        Annotated[int, Meta(ge=0)],
        doc("How many people are listed."),
    ]
    orderedItems: Annotated[
        Annotated[list[Standing], Meta(max_length=100)],
        doc("The top scorers, most points first (at most 100)."),
    ]


class LeaderboardUpdated(Activity):
    type: Literal["Update"]
    object: Annotated[
        Leaderboard,
        doc("The leaderboard after the latest award."),
    ]


POINTS_AWARDED = register(
    Topic(
        "events/points/awarded",
        "points",
        1,
        False,
        PointsAwarded,
        "A person earned points (`object.rule`, `object.points`, new `object.total`).",
        actor="the points service; `target` is the person who earned them",
    )
)
LEADERBOARD = register(
    Topic(
        "state/leaderboard",
        "points",
        1,
        True,
        LeaderboardUpdated,
        "The top scorers, most points first, retained for late joiners.",
        actor="the points service",
    )
)
