"""Dead letters as payloads: a parked message, its redelivery, and the operator's
commands to the deadletters service and its answers (``dovecote.letters`` reads and writes
them)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from dovecote.as2 import Activity, Iri, Model, Name, Published, Text, doc


class ParkedMessage(Model):
    type: Literal["Object"]
    name: Annotated[
        Annotated[str, Meta(max_length=65535)],
        doc("The topic the original arrived on."),
    ]
    mediaType: Annotated[
        Literal["application/activity+json", "application/octet-stream;base64"],
        doc(
            "`application/activity+json`: `content` is the original as text; "
            "`application/octet-stream;base64`: it was not UTF-8 and `content` is base64."
        ),
    ]
    content: Annotated[
        str,
        doc(
            "The original payload, cut short when the whole letter would exceed the "
            "payload limit (compare with `size`)."
        ),
    ]
    size: Annotated[
        int,
        doc("Bytes of the original payload."),
    ]
    attempts: Annotated[
        Annotated[int, Meta(ge=0)],
        doc(
            "How often the handler ran before the message was parked (0: refused before "
            "any handler)."
        ),
    ]


class DeadLetter(Activity):
    """A message a service could not process, parked with the reason (``summary``)."""

    type: Literal["Flag"]
    object: Annotated[
        ParkedMessage,
        doc("The message that was parked."),
    ]
    signature: Annotated[
        Annotated[str, Meta(max_length=128)] | None,
        doc(
            "HMAC-SHA256 (hex) by the parking service's redelivery key over its name, this "
            "letter's id, the original topic and the whole original payload: the service "
            "redelivers only a letter it signed, unchanged (`dovecote.redelivery`)."
        ),
    ] = None


class Redelivery(Activity):
    """Un-park a dead letter: the service that parked it handles the original payload again,
    as if it had just arrived on its original topic (``object.object.name``)."""

    type: Literal["Undo"]
    object: Annotated[
        DeadLetter,
        doc("The dead letter to handle again, as its service parked it."),
    ]


class LetterQuery(Model):
    type: Literal["Collection"]
    service: Annotated[
        Name | None,
        doc("Only this service's letters."),
    ] = None
    limit: Annotated[
        Annotated[int, Meta(ge=1, le=1000)],
        doc("At most this many, newest first."),
    ] = 100


class ListDeadLetters(Activity):
    """An operator asks the deadletters service what it holds (``dovecote deadletter list``)."""

    type: Literal["View"]
    object: Annotated[
        LetterQuery,
        doc("Which letters to list."),
    ]


class LetterSelection(Model):
    type: Literal["Collection"]
    items: Annotated[
        Annotated[list[Iri], Meta(max_length=1000)],
        doc("Letter ids to replay."),
    ] = []
    service: Annotated[
        Name | None,
        doc("With `all`: only this service's letters."),
    ] = None
    all: Annotated[
        bool,
        doc("Every letter not replayed yet."),
    ] = False


class ReplayDeadLetters(Activity):
    """An operator asks for letters to be replayed (``dovecote deadletter replay``)."""

    type: Literal["Undo"]
    object: Annotated[
        LetterSelection,
        doc("Which letters to replay."),
    ]


class LetterSummary(Model):
    type: Literal["Flag"]
    id: Annotated[
        Iri,
        doc("The letter's id (the `Flag` activity's id)."),
    ]
    service: Annotated[
        Name,
        doc("The service that parked it."),
    ]
    topic: Annotated[
        Annotated[str, Meta(max_length=65535)],
        doc("The original topic."),
    ]
    summary: Annotated[
        Text,
        doc("The reason it was parked."),
    ]
    attempts: Annotated[
        int,
        doc("Handler runs before it was parked."),
    ]
    size: Annotated[
        int,
        doc("Bytes of the original payload."),
    ]
    published: Annotated[
        Published,
        doc("When the service parked it."),
    ]
    replays: Annotated[
        int,
        doc("How often it was replayed (0: never)."),
    ]
    lastReplayed: Annotated[
        Published | None,
        doc("When it was last replayed."),
    ] = None


class LetterReport(Model):
    type: Literal["OrderedCollection"]
    totalItems: Annotated[
        int,
        doc("Letters held that match, including those not listed."),
    ]
    orderedItems: Annotated[
        list[LetterSummary],
        doc("The letters listed, newest first."),
    ] = []
    missing: Annotated[
        list[Iri],
        doc("Asked-for letter ids the service does not hold."),
    ] = []


class DeadLetterReply(Activity, kw_only=True):
    """The deadletters service's answer to one operator command (``inReplyTo`` its id)."""

    type: Literal["Accept", "Reject"]
    object: Annotated[
        LetterReport,
        doc("The answer."),
    ]
    inReplyTo: Annotated[
        Iri,
        doc("The id of the operator's command this answers."),
    ]
