"""The Activity Streams 2.0 base types every payload is made of: ``Model``, ``Actor``,
``Activity``, the field types (``Iri``, ``Name`` ...) and ``doc()``, a field's meaning.

Import them from ``dovecote.activity``; this module exists so the runtime's payload modules
(``dovecote.payloads``) can build on them while ``dovecote.activity`` re-exports those.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from dovecote.errors import InvalidActivity as InvalidActivity  # re-exported: act.InvalidActivity

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
MEDIA_TYPE = "application/activity+json"

# An absolute IRI: a scheme, a colon, no whitespace. Ids are urn:uuid:..., actors http(s) URLs.
Iri = Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$", max_length=2048)]
Text = Annotated[str, Meta(max_length=4096)]
Name = Annotated[str, Meta(max_length=200)]
Percent = Annotated[int, Meta(ge=0, le=100)]
Published = Annotated[datetime, Meta(tz=True)]


def doc(text: str) -> Meta:
    """A field's meaning, for the published contract (JSON Schema, AsyncAPI, topics.md)."""
    return Meta(description=text)


class Model(Struct, kw_only=True, omit_defaults=True):
    """Base of every AS2 object here: open to unknown properties (a subscriber ignores
    fields it does not know), defaults left out when encoding.

    msgspec applies ``kw_only`` class by class, to the fields a class declares: a payload
    that puts a required field after one with a default says so itself, ``class
    Reply(Activity, kw_only=True)``, or it fails at import ("Required field ... cannot
    follow optional fields"). Build payloads with keywords all the same: positions change
    when a base class gains a field."""


class Actor(Model):
    id: Annotated[
        Iri,
        doc(
            "The actor's IRI: a person's URL in the gateway's user directory "
            "(`<PUBLIC_URL>/users/<user>`), or `urn:dovecote:service:<service>` for a "
            "service."
        ),
    ]
    type: Annotated[
        Literal["Person", "Service", "Application", "Group", "Organization"],
        doc("`Person` for people; `Service` for Dovecote's services."),
    ]
    name: Annotated[
        Name | None,
        doc("A display name; shown to people, never used as a key."),
    ] = None
    followers: Annotated[
        Iri | None,
        doc(
            "A person's followers collection (the gateway's REST resource); the notifier "
            "GETs it to fan out notifications."
        ),
    ] = None
    icon: Annotated[
        Iri | None,
        doc("An avatar image URL."),
    ] = None
    preferredUsername: Annotated[
        Name | None,
        doc(
            "The person's user id in the directory: what a `{user}` topic level is made "
            "of (`users/<preferredUsername>/notifications`)."
        ),
    ] = None


class Activity(Model, rename={"context_": "@context"}):
    """Every Dovecote payload. Subclasses narrow ``type`` and ``object`` per topic."""

    context_: Annotated[
        str | list[str | dict[str, Any]],
        doc(
            "The JSON-LD context (`@context`): must include "
            "`https://www.w3.org/ns/activitystreams`."
        ),
    ]
    id: Annotated[
        Iri,
        doc(
            "A unique IRI (`urn:uuid:...`). Delivery is at least once: a subscriber may "
            "get the same activity twice and must act once per `id` (the runtime skips "
            "repeats it has handled). An activity made because of another keeps the same "
            "`id` on every redelivery of its cause."
        ),
    ]
    type: Annotated[
        Name,
        doc("The AS2 activity type (`Create`, `Update`, ...); each payload type fixes it."),
    ]
    actor: Annotated[
        Actor,
        doc(
            "Who did it: the person who asked (commands and uploads carry the signed-in "
            "person) or the service that published it. See each topic's actor in "
            "topics.md."
        ),
    ]
    object: Annotated[
        Any,
        doc("What the activity is about; each payload type narrows it."),
    ]
    published: Annotated[
        Published,
        doc("When the publisher made it: RFC 3339 with a time zone (UTC, milliseconds)."),
    ]
    target: Annotated[
        Any,
        doc(
            "What the activity is aimed at, where the type says (e.g. the person who "
            "earned points)."
        ),
    ] = None
    result: Annotated[
        Any,
        doc("An outcome, where the type says."),
    ] = None
    context: Annotated[
        Annotated[str, Meta(max_length=200)] | None,
        doc(
            "The correlation id that follows one piece of work (an upload, a build) "
            "through every service; `dovecote tail` and the logs show it."
        ),
    ] = None
    summary: Annotated[
        Text | None,
        doc(
            "A short human-readable sentence (a rejection's reason, a dead letter's "
            "reason, a tweet's text)."
        ),
    ] = None

    def __post_init__(self) -> None:
        contexts = self.context_ if isinstance(self.context_, list) else [self.context_]
        if AS_CONTEXT not in contexts:
            raise ValueError(f"`@context` must include {AS_CONTEXT}")
