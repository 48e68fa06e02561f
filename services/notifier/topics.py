"""The notifier's contract: the topics it publishes (a person's notifications, their inbox's
counts, its answers to the gateway's inbox requests) and their payloads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from dovecote.activity import Activity, Actor, Iri, Model, Name, doc
from dovecote.topics import Topic, register


class NotifiedActivity(Model):
    """What a notification is about: the original activity, cut down to what a page shows."""

    type: Annotated[
        Name,
        doc("The original activity's type (`Create`, `Update`)."),
    ]
    id: Annotated[
        Iri,
        doc("The original activity's id."),
    ]
    actor: Annotated[
        Actor,
        doc("Who did what the notification is about."),
    ]
    object: Annotated[
        Any,
        doc("The image or build, as the original carried it."),
    ]


class Notification(Activity, kw_only=True):
    """One notification for one person (``to``), on that person's own topic."""

    type: Literal["Announce"]
    object: Annotated[
        NotifiedActivity,
        doc("The activity the person is told about, cut down to what a page shows."),
    ]
    to: Annotated[
        Annotated[list[Iri], Meta(min_length=1, max_length=1)],
        doc(
            "The one person notified (their actor IRI); the topic's `{user}` is their "
            "`preferredUsername`."
        ),
    ]


class Inbox(Model):
    type: Literal["OrderedCollection"]
    totalItems: Annotated[
        Annotated[int, Meta(ge=0)],
        doc("Notifications kept for this person (the newest `INBOX_SIZE`)."),
    ]
    unread: Annotated[
        Annotated[int, Meta(ge=0)],
        doc(
            "How many are unread: always the newest ones, so the first `unread` of "
            "`orderedItems` (reading marks everything up to a notification as read)."
        ),
    ]
    orderedItems: Annotated[
        Annotated[list[Notification], Meta(max_length=200)],
        doc("The notifications as they were published, newest first."),
    ]


class InboxReply(Activity, kw_only=True):
    """The notifier's answer to one ``ViewInbox`` (``inReplyTo`` its id)."""

    type: Literal["Accept"]
    object: Annotated[
        Inbox,
        doc("The person's inbox."),
    ]
    inReplyTo: Annotated[
        Iri,
        doc("The id of the `View` this answers."),
    ]


class InboxState(Model):
    type: Literal["OrderedCollection"]
    totalItems: Annotated[
        Annotated[int, Meta(ge=0)],
        doc("Notifications kept for this person."),
    ]
    unread: Annotated[
        Annotated[int, Meta(ge=0)],
        doc("How many of them are unread now: the page's badge."),
    ]


class InboxUpdated(Activity):
    """A person's inbox changed other than by a new notification (they read it)."""

    type: Literal["Update"]
    object: Annotated[
        InboxState,
        doc("The inbox's counts after the change."),
    ]


NOTIFICATION = register(
    Topic(
        "users/{user}/notifications",
        "notifier",
        1,
        False,
        Notification,
        "One notification for one person (someone they follow uploaded, a build finished). "
        "The gateway sends it to that person's sockets only.",
        actor="the notifier; `to` is the person notified, `object.actor` who did it",
    )
)
INBOX_REPLY = register(
    Topic(
        "replies/notifier/{request}",
        "notifier",
        1,
        False,
        InboxReply,
        "The notifier's answer to one `commands/notifier/inbox`; every gateway worker "
        "subscribes, the one that asked takes it.",
        actor="the notifier",
    )
)
INBOX_STATE = register(
    Topic(
        "users/{user}/inbox",
        "notifier",
        1,
        False,
        InboxUpdated,
        "A person's inbox counts after they read it; the gateway sends it to that person's "
        "sockets only (every open page clears its badge).",
        actor="the notifier",
    )
)
