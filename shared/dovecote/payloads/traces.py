"""Traces as payloads: the operator's question (``dovecote trace``) and the answer, every
activity that carried one correlation id, oldest step first."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from dovecote.as2 import Activity, Iri, Model, Name, Published, Text, doc
from dovecote.payloads.metrics import Count


class TraceQuery(Model):
    type: Literal["Collection"]
    context: Annotated[
        Annotated[str, Meta(min_length=1, max_length=200)],
        doc(
            "A correlation id (`context`), or the start of one (at least 4 characters: the "
            "`ctx 37747bd6` that `dovecote tail` shows is enough)."
        ),
    ]


class ViewTrace(Activity):
    """An operator asks the gateway for one correlation id's trace (``dovecote trace``)."""

    type: Literal["View"]
    object: Annotated[
        TraceQuery,
        doc("Which trace."),
    ]


class TraceStep(Model):
    """One activity that carried the correlation id, as the gateway saw it."""

    type: Literal["Link"]
    href: Annotated[
        Iri,
        doc("The activity's id."),
    ]
    name: Annotated[
        Annotated[str, Meta(max_length=65535)],
        doc("The topic it was published on, below the root."),
    ]
    activity: Annotated[
        Name,
        doc("The activity's type (`Create`, `Update`, ...)."),
    ]
    service: Annotated[
        Name,
        doc(
            "Who published it: the topic's publisher in the registry (for a topic every "
            "service publishes, the service its topic names), else the actor's name."
        ),
    ]
    actor: Annotated[
        Name,
        doc("The activity's actor, by name (or id)."),
    ]
    summary: Annotated[
        Text,
        doc("A few words about its object (as `dovecote tail` shows it)."),
    ]
    published: Annotated[
        Published,
        doc("When its publisher made it: the steps are in this order."),
    ]
    received: Annotated[
        Published,
        doc("When the gateway received it."),
    ]


class Trace(Model):
    type: Literal["OrderedCollection"]
    totalItems: Annotated[
        Count,
        doc("Activities the gateway holds for it (the first 200 are listed)."),
    ]
    context: Annotated[
        Annotated[str, Meta(max_length=200)] | None,
        doc("The correlation id found; absent when none (or several) matched."),
    ] = None
    orderedItems: Annotated[
        Annotated[list[TraceStep], Meta(max_length=200)],
        doc("The activities, oldest first by `published`."),
    ] = []
    partial: Annotated[
        bool,
        doc(
            "Older steps of this trace were dropped: the gateway's index is bounded "
            "(`TRACE_INDEX_BYTES`) and keeps the newest."
        ),
    ] = False
    candidates: Annotated[
        Annotated[list[Annotated[str, Meta(max_length=200)]], Meta(max_length=20)],
        doc("Correlation ids that start with what was asked, when more than one does."),
    ] = []


class TraceReply(Activity, kw_only=True):
    """The gateway's answer to one ``ViewTrace`` (``inReplyTo`` its id)."""

    type: Literal["Accept"]
    object: Annotated[
        Trace,
        doc("The trace."),
    ]
    inReplyTo: Annotated[
        Iri,
        doc("The id of the `View` this answers."),
    ]
