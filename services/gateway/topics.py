"""The gateway's contract: the topics it publishes and their payloads.

What people do through it goes on the bus from here: an upload (``events/image/created``),
a follow, the builder's commands, the notifier's inbox requests. A service that reads one of
these imports this module.

Only gateways read ``commands/gateway/disconnect``: each gateway worker holds its own
browsers' sockets, so when a person's sign-in ends on one of them (sign-out, "sign out
everywhere", a new password, a token revoked), it tells the others to close that sign-in's
sockets too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from dovecote.activity import Activity, Actor, Iri, Model, Name, doc
from dovecote.topics import Topic, register

# "session:<handle>" (a browser's sign-in, services/gateway/accounts/signins.py) or "token:<id>".
Credential = Annotated[str, Meta(pattern=r"^(session:[0-9a-f]{16}|token:[0-9a-f]{12})$")]


class EndedSignIns(Model):
    """The sign-ins of one person that ended."""

    type: Literal["Collection"]
    attributedTo: Annotated[
        Actor, doc("Whose sign-ins they were (`preferredUsername` is the user id).")
    ]
    items: Annotated[
        list[Credential],
        Meta(min_length=1, max_length=100),
        doc(
            "Each ended sign-in: `session:<handle>` (a browser's, as `/account` lists it) "
            "or `token:<id>` (an API token's). Handles and ids only: no secret."
        ),
    ]


class SignInsEnded(Activity):
    """A person's sign-ins ended: every gateway closes the sockets opened with them."""

    type: Literal["Delete"]
    object: Annotated[EndedSignIns, doc("The sign-ins that ended, and whose.")]


SIGNINS_ENDED = register(
    Topic(
        "commands/gateway/disconnect",
        "gateway",
        1,
        False,
        SignInsEnded,
        "A person's sign-ins ended on one gateway (sign-out, sign out everywhere, a new "
        "password, a token revoked): every gateway worker closes the sockets opened with "
        "them (close code 4401; the page goes to the sign-in page). Requests with them are "
        "refused already: the sign-ins are gone from the shared accounts store.",
        actor="the person whose sign-ins ended, or the operator who ended them",
    )
)


class BuildRequest(Model):
    type: Literal["Build"]
    shouldFail: Annotated[
        bool,
        doc("The seed's demo: when true, the build fails at 70 %."),
    ] = False
    name: Annotated[
        Name | None,
        doc("A name for the build; the builder numbers builds when absent (`Build #7`)."),
    ] = None


class BuildRef(Model):
    type: Literal["Build"]
    id: Annotated[
        Iri | None,
        doc("The build to stop; absent: whichever build is running."),
    ] = None


class StartBuild(Activity):
    type: Literal["Start"]
    object: Annotated[
        BuildRequest,
        doc("What to build."),
    ]


class StopBuild(Activity):
    type: Literal["Stop"]
    object: Annotated[
        BuildRef,
        doc("Which build to stop."),
    ]


ImageMediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]


Pixels = Annotated[int, Meta(ge=1, le=100_000)]


class Image(Model):
    """An uploaded image. ``id`` and ``url`` are the gateway's REST resource of the original."""

    type: Literal["Image"]
    id: Annotated[
        Iri,
        doc("The image's IRI: the gateway's REST resource of the original."),
    ]
    url: Annotated[
        Iri,
        doc("Where the original's bytes are (GET, under the gateway's public URL)."),
    ]
    mediaType: Annotated[
        ImageMediaType,
        doc("The format, judged by the gateway from the bytes, not from the upload's claim."),
    ]
    name: Annotated[
        Name,
        doc("The title the uploader gave (or the file name)."),
    ]
    width: Annotated[
        Pixels,
        doc("Pixels."),
    ]
    height: Annotated[
        Pixels,
        doc("Pixels."),
    ]
    size: Annotated[
        Annotated[int, Meta(ge=1)],
        doc("Bytes of the original (an extension property)."),
    ]
    attributedTo: Annotated[
        Actor | None,
        doc("The person who uploaded it."),
    ] = None


class ImageCreated(Activity):
    type: Literal["Create"]
    object: Annotated[
        Image,
        doc("The uploaded image, already stored by the gateway."),
    ]


class Followed(Activity):
    """A person followed another: the gateway publishes it when they press Follow (or a
    script asks with its token); the follow is stored before this is published."""

    type: Literal["Follow"]
    object: Annotated[
        Actor,
        doc("The person now followed (`preferredUsername` is their user id)."),
    ]


class FollowRef(Model):
    """The follow an ``Undo`` takes back."""

    type: Literal["Follow"]
    actor: Annotated[
        Actor,
        doc("Who followed (the person who now unfollows)."),
    ]
    object: Annotated[
        Actor,
        doc("Who was followed."),
    ]


class Unfollowed(Activity):
    """A person stopped following another (an AS2 ``Undo`` of their ``Follow``)."""

    type: Literal["Undo"]
    object: Annotated[
        FollowRef,
        doc("The follow taken back."),
    ]


InboxLimit = Annotated[int, Meta(ge=1, le=200)]


class InboxRequest(Model):
    type: Literal["OrderedCollection"]
    limit: Annotated[
        InboxLimit,
        doc("At most this many notifications, newest first (1-200)."),
    ] = 50


class ViewInbox(Activity):
    """The gateway asks the notifier for the ``actor``'s inbox (to render their page)."""

    type: Literal["View"]
    object: Annotated[
        InboxRequest,
        doc("What to return."),
    ]


class InboxMark(Model):
    type: Literal["OrderedCollection"]
    upTo: Annotated[
        Iri | None,
        doc(
            "The newest notification the person saw: it and every older one are read. "
            "Absent, or one no longer kept: all of them."
        ),
    ] = None


class ReadInbox(Activity):
    """The ``actor`` read their notifications ("Mark all read" on the page)."""

    type: Literal["Read"]
    object: Annotated[
        InboxMark,
        doc("Up to which notification."),
    ]


BUILD_START = register(
    Topic(
        "commands/builder/start",
        "gateway",
        1,
        False,
        StartBuild,
        "Ask the builder to start a build (refused while one is running).",
        actor="the person the gateway acts for (who pressed Start)",
    )
)
BUILD_STOP = register(
    Topic(
        "commands/builder/stop",
        "gateway",
        1,
        False,
        StopBuild,
        "Ask the builder to stop the running build.",
        actor="the person the gateway acts for (who pressed Stop)",
    )
)
IMAGE_CREATED = register(
    Topic(
        "events/image/created",
        "gateway",
        1,
        False,
        ImageCreated,
        "A person uploaded an image; the gateway stored the original at `object.url`. "
        "`context` is the upload's correlation id.",
        actor="the person who uploaded the image (the gateway publishes for them)",
    )
)
INBOX_VIEW = register(
    Topic(
        "commands/notifier/inbox",
        "gateway",
        1,
        False,
        ViewInbox,
        "The gateway asks for a person's inbox (their last notifications and how many are "
        "unread), to render their page; the answer comes on `replies/notifier/{request}`.",
        actor="the signed-in person whose inbox it is",
    )
)
INBOX_READ = register(
    Topic(
        "commands/notifier/read",
        "gateway",
        1,
        False,
        ReadInbox,
        'A person read their notifications ("Mark all read"): the notifier marks them '
        "and publishes the new counts on `users/{user}/inbox`.",
        actor="the signed-in person who read them",
    )
)
PERSON_FOLLOWED = register(
    Topic(
        "events/people/followed",
        "gateway",
        1,
        False,
        Followed,
        "A person followed another (stored first: the next notification counts it).",
        actor="the person who followed; `object` is the person followed",
    )
)
PERSON_UNFOLLOWED = register(
    Topic(
        "events/people/unfollowed",
        "gateway",
        1,
        False,
        Unfollowed,
        "A person stopped following another.",
        actor="the person who unfollowed; `object.object` is the person they followed",
    )
)
