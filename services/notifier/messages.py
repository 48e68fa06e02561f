"""What a notification says and who gets one: pure functions, no I/O."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from dovecote import activity as act
from dovecote.topics import TopicError, check_id
from services.builder import topics as builder_topics
from services.gateway import topics as gateway_topics
from services.notifier import topics as notifier_topics


class Collection(act.Model):
    """An AS2 collection of people, as a followers URL returns it (unpaged)."""

    type: Literal["Collection", "OrderedCollection"]
    items: list[act.Actor] = []
    orderedItems: list[act.Actor] = []


def people(collection: Any) -> list[act.Actor]:
    """The people in a followers collection; ``ValueError`` if it is not one."""
    try:
        parsed = msgspec.convert(collection, Collection)
    except msgspec.ValidationError as exc:
        raise ValueError(f"not an AS2 collection of people: {exc}") from None
    return [*parsed.items, *parsed.orderedItems]


def username(person: act.Actor) -> str | None:
    """The person's id in the directory (a topic level), or None if they have no valid one."""
    try:
        return check_id(person.preferredUsername or "", "user id")
    except TopicError:
        return None


def name(person: act.Actor) -> str:
    return person.name or person.preferredUsername or person.id


def about(activity: act.Activity) -> notifier_topics.NotifiedActivity:
    """The original activity, cut down to what a notification needs to show and link."""
    obj = act.to_builtins(activity.object)
    keep = ("type", "id", "url", "name", "state", "progress", "mediaType", "width", "height")
    return notifier_topics.NotifiedActivity(
        type=activity.type,
        id=activity.id,
        actor=activity.actor,
        object={k: obj[k] for k in keep if k in obj},
    )


def image_summary(activity: gateway_topics.ImageCreated) -> str:
    return f"{name(activity.actor)} shared a photo: “{activity.object.name}”"


def follow_summary(activity: gateway_topics.Followed) -> str:
    return f"{name(activity.actor)} followed you"


def build_summary(build: builder_topics.Build, requester: act.Actor, recipient: act.Actor) -> str:
    whose = "Your" if recipient.id == requester.id else f"{name(requester)}’s"
    # The builder names builds "Build #7": no "build Build #7".
    what = build.name if build.name.lower().startswith("build") else f"build {build.name}"
    return f"{whose} {what} {build.state}"


def notification(
    actor: act.Actor,
    recipient: act.Actor,
    cause: act.Activity,
    summary: str,
) -> notifier_topics.Notification:
    """One Announce for one person. Its id is derived from the cause and the recipient, so
    a redelivered cause makes the same notification, which subscribers skip as seen."""
    return notifier_topics.Notification(
        **act.envelope(act.derived_id(cause.id, recipient.id)),
        type="Announce",
        actor=actor,
        object=about(cause),
        context=cause.context or cause.id,
        summary=summary,
        to=[recipient.id],
    )


def inbox_state_id(read: str, total: int, unread: int) -> str:
    """The id of the inbox state a read (the command ``read``) makes: the same on a re-run
    that finds the same counts (a copy, which subscribers skip), another when a notification
    came in between: a newer state, where one id would be a different activity reusing a
    handled id, which subscribers park (docs/operating.md)."""
    return act.derived_id(read, "inbox", str(total), str(unread))
