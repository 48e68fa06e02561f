"""W3C Activity Streams 2.0 payloads: the typed model, the codec and its validation.

Inbound payloads are decoded *and* validated in one step by msgspec into the topic's
payload type (~3 us a message, see docs/performance.md); a payload that does not conform
raises ``InvalidActivity`` with a reason a person can act on. Outbound activities are the same
Structs, built by their producers (``BuildUpdated(**envelope(), type="Update", ...)``), so mypy
reports a producer that forgets a field or puts the wrong type on a topic; ``encode()`` writes
them with msgspec. The JSON Schema that documents the contract is
generated from the same types (``json_schema()``), so code and contract cannot drift: every
field says what it means (``doc()``), and a test fails on a field that does not.

There is no official AS2 JSON Schema; this one is deliberately open: unknown properties
are allowed (AS2 is extensible), the properties Dovecote relies on are checked.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypedDict

import msgspec
from msgspec import Meta, Struct
from typing_extensions import TypeVar

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
    """Base of every AS2 object here: keyword-only, open to unknown properties."""


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


# --- build -------------------------------------------------------------------------------

BuildState = Literal["running", "succeeded", "failed", "stopped"]


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


class Build(Model):
    type: Literal["Build"]
    id: Annotated[
        Iri,
        doc("The build's IRI (`urn:uuid:...`), stable from start to finish."),
    ]
    name: Annotated[
        Name,
        doc("A display name (`Build #7`)."),
    ]
    state: Annotated[
        BuildState,
        doc(
            "`running`, then one of `succeeded`, `failed` (also: interrupted by a builder"
            " restart) or `stopped`."
        ),
    ]
    progress: Annotated[
        Percent,
        doc("Percent done, 0-100, in steps of 10."),
    ]
    shouldFail: Annotated[
        bool,
        doc("Whether this build was asked to fail at 70 % (the seed's demo)."),
    ] = False
    startTime: Annotated[
        Published | None,
        doc("When it started."),
    ] = None
    endTime: Annotated[
        Published | None,
        doc("When it finished; absent while running."),
    ] = None
    attributedTo: Annotated[
        Actor | None,
        doc("The person who asked for the build (the actor of the `Start` command)."),
    ] = None
    worker: Annotated[
        Name | None,
        doc("The builder instance running it (`DOVECOTE_INSTANCE`)."),
    ] = None
    summary: Annotated[
        Text | None,
        doc(
            "Why it ended, for people: set when it failed (asked to, or interrupted by a "
            "builder restart) or was stopped (by whom, at what progress)."
        ),
    ] = None
    stoppedBy: Annotated[
        Actor | None,
        doc("The person whose Stop ended it; absent when the builder itself stopped it."),
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


class BuildCreated(Activity):
    type: Literal["Create"]
    object: Annotated[
        Build,
        doc("The build, just started (progress 0)."),
    ]


class BuildUpdated(Activity):
    type: Literal["Update"]
    object: Annotated[
        Build,
        doc("The build as it is now."),
    ]


class BuildRejected(Activity):
    """The builder refused a command; ``summary`` says why, ``object`` is the command."""

    type: Literal["Reject"]
    object: Annotated[
        Any,
        doc("The refused command, as it arrived."),
    ]


class BuildHistory(Model):
    type: Literal["OrderedCollection"]
    totalItems: Annotated[
        Annotated[int, Meta(ge=0)],
        doc("How many builds are listed."),
    ]
    orderedItems: Annotated[
        Annotated[list[Build], Meta(max_length=100)],
        doc("The last builds, newest first (at most 100)."),
    ]


class BuildHistoryUpdated(Activity):
    type: Literal["Update"]
    object: Annotated[
        BuildHistory,
        doc("The history after the latest change."),
    ]


# --- images ------------------------------------------------------------------------------

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


class Thumbnail(Model):
    """One re-encoded, smaller copy of an image (an AS2 ``Link`` with its dimensions)."""

    type: Literal["Link"]
    href: Annotated[
        Iri,
        doc("Where the thumbnail's bytes are (under the gateway's public URL)."),
    ]
    mediaType: Annotated[
        ImageMediaType,
        doc("The thumbnail's format."),
    ]
    width: Annotated[
        Pixels,
        doc("Pixels."),
    ]
    height: Annotated[
        Pixels,
        doc("Pixels."),
    ]
    rel: Annotated[
        Literal["preview"],
        doc("Always `preview`."),
    ] = "preview"


class ResizedImage(Model):
    type: Literal["Image"]
    id: Annotated[
        Iri,
        doc("The original image's IRI (as in `events/image/created`)."),
    ]
    url: Annotated[
        Iri,
        doc("The original's URL."),
    ]
    preview: Annotated[
        Annotated[list[Thumbnail], Meta(min_length=1, max_length=8)],
        doc("The thumbnails, smallest first."),
    ]
    name: Annotated[
        Name | None,
        doc("The image's title."),
    ] = None


class ImageCreated(Activity):
    type: Literal["Create"]
    object: Annotated[
        Image,
        doc("The uploaded image, already stored by the gateway."),
    ]


class ImageResized(Activity):
    """The resizer stored thumbnails of an image; ``object.preview`` lists them."""

    type: Literal["Update"]
    object: Annotated[
        ResizedImage,
        doc("The image with its thumbnails."),
    ]


# --- notifications and points --------------------------------------------------------------


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


# --- people: follows and the inbox -------------------------------------------------------


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


# --- presence and dead letters -----------------------------------------------------------


class ServiceInstance(Model):
    type: Literal["Service"]
    id: Annotated[
        Iri,
        doc("`urn:dovecote:service:<service>:<instance>`."),
    ]
    name: Annotated[
        Name,
        doc("The service."),
    ]
    instance: Annotated[
        Name,
        doc("The worker within its service (`DOVECOTE_INSTANCE`)."),
    ]
    status: Annotated[
        Literal["online", "offline"],
        doc(
            "`online` (a retained Join) or `offline` (a Leave: a clean stop, or the "
            "worker's Last Will)."
        ),
    ]
    pid: Annotated[
        int | None,
        doc("The worker's process id (operators' tools only)."),
    ] = None
    host: Annotated[
        Name | None,
        doc("The worker's host name (operators' tools only)."),
    ] = None


class Presence(Activity):
    type: Literal["Join", "Leave"]
    object: Annotated[
        ServiceInstance,
        doc("The worker."),
    ]


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


# --- metrics and traces ----------------------------------------------------------------

Count = Annotated[int, Meta(ge=0)]
Label = Annotated[str, Meta(max_length=200)]
ReadingName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class Latency(Model):
    """Handler latency as a histogram: how many messages took how long."""

    bounds: Annotated[
        Annotated[list[float], Meta(min_length=1, max_length=64)],
        doc("Upper bounds of the buckets in seconds, ascending."),
    ]
    counts: Annotated[
        Annotated[list[Count], Meta(min_length=2, max_length=65)],
        doc(
            "Messages per bucket since the worker started, one more than `bounds`: "
            "`counts[i]` took at most `bounds[i]` (and more than `bounds[i-1]`); the last "
            "took longer than every bound. Not cumulative."
        ),
    ]
    sum: Annotated[
        Annotated[float, Meta(ge=0)],
        doc("Seconds, every message together."),
    ]


class WorkerMeasurements(Model):
    """One worker's totals since it started; rates come from two reports' difference."""

    type: Literal["Service"]
    id: Annotated[
        Iri,
        doc("`urn:dovecote:service:<service>:<instance>`."),
    ]
    name: Annotated[
        Name,
        doc("The service."),
    ]
    instance: Annotated[
        Name,
        doc("The worker within its service (`DOVECOTE_INSTANCE`)."),
    ]
    started: Annotated[
        Published,
        doc("When the worker started: every count below is since then."),
    ]
    interval: Annotated[
        Annotated[float, Meta(gt=0)],
        doc("Seconds between two reports (`DOVECOTE_METRICS_INTERVAL`)."),
    ]
    connected: Annotated[
        bool,
        doc(
            "Whether the worker's connection to the broker was up when it made the report "
            "(a worker that is down sends none: its reports stop)."
        ),
    ]
    reconnects: Annotated[
        Count,
        doc("Times the worker connected again after losing the broker."),
    ]
    handled: Annotated[
        Annotated[dict[Label, Count], Meta(max_length=128)],
        doc(
            "Messages whose handler ran to its end (or gave up), by topic: the registry's "
            "pattern (`users/{user}/notifications`), else the topic below the root; past "
            "100 topics, `other`."
        ),
    ]
    latency: Annotated[
        Latency,
        doc(
            "How long handling took, from the moment the message's handler began to its "
            "acknowledgement: retries and their backoff included."
        ),
    ]
    skipped: Annotated[
        Count,
        doc(
            "Redeliveries skipped: copies of an activity already handled, or still in its "
            "handler (acknowledged with it)."
        ),
    ]
    retries: Annotated[
        Count,
        doc("Handler runs after a failed first one."),
    ]
    parked: Annotated[
        Count,
        doc("Messages dead-lettered (on `deadletter/<service>`)."),
    ]
    published: Annotated[
        Count,
        doc("Messages the worker published (its reports, presence and letters included)."),
    ]
    unacknowledged: Annotated[
        Count,
        doc("QoS 1 publishes the broker has not acknowledged yet."),
    ]
    inflight: Annotated[
        Count,
        doc("Handlers running now (waiting on I/O, or on a retry's backoff)."),
    ]
    lag: Annotated[
        Annotated[float, Meta(ge=0)],
        doc(
            "Seconds: how old the newest activity the worker began handling since the last "
            "report was when it began (now minus its `published`); 0 when it began none. "
            "Includes the clock difference between the publisher and this worker."
        ),
    ]
    outbox: Annotated[
        Count | None,
        doc(
            "Messages in the worker's durable outbox that the broker has not acknowledged "
            "(services with one: the gateway)."
        ),
    ] = None
    readings: Annotated[
        Annotated[dict[ReadingName, float], Meta(max_length=32)],
        doc(
            "The service's own readings (the gateway's open sockets, bytes queued, 1013 "
            "closes, replays): a name ending in `_total` counts since the start, any other "
            "is a value now."
        ),
    ] = {}


class MetricsReport(Activity):
    """A worker's measurements, every few seconds (``dovecote.metrics``)."""

    type: Literal["Update"]
    object: Annotated[
        WorkerMeasurements,
        doc("The worker and its measurements."),
    ]


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


# --- codec -------------------------------------------------------------------------------


K = TypeVar("K", bound=Activity, default=Any)  # what a ``Codec`` decodes to


class Codec(Generic[K]):
    """Decodes and validates one payload type. Build one per topic, reuse it."""

    def __init__(self, kind: type[K]) -> None:
        self.kind = kind
        self._decoder: msgspec.json.Decoder[K] = msgspec.json.Decoder(kind)

    def decode(self, payload: bytes | bytearray | memoryview | str) -> K:
        try:
            return self._decoder.decode(payload)
        except msgspec.ValidationError as exc:
            raise InvalidActivity(f"not a valid {self.kind.__name__}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise InvalidActivity(f"malformed JSON: {exc}") from None
        except RecursionError:
            # msgspec recurses once per level of an `Any` field (object, target, result):
            # a payload nested a few thousand levels deep is hostile, not an activity.
            raise InvalidActivity("malformed JSON: nested too deeply") from None


class Instant(datetime):
    """A moment this process stamps (``published``, a build's times): encoded as ``now()``
    writes it, RFC 3339 in UTC to the millisecond (``2026-11-29T07:51:54.123Z``). A time
    decoded from a payload is a plain ``datetime`` and keeps msgspec's form."""

    __slots__ = ("text",)  # written once by ``instant()``: encoding it costs nothing more

    @classmethod
    def of(cls, moment: datetime) -> Instant:
        """A decoded time, to publish again in the same form (to the millisecond)."""
        return cls(
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond,
            moment.tzinfo,
        )

    def rfc3339(self) -> str:
        text: str | None = getattr(self, "text", None)
        if text is None:
            text = self.text = self.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return text


def _encode_other(value: Any) -> Any:
    if isinstance(value, Instant):
        return value.rfc3339()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_encoder = msgspec.json.Encoder(enc_hook=_encode_other)


def encode(activity: Activity | Model | Mapping[str, Any] | datetime) -> bytes:
    """JSON of a typed activity (a Struct: the runtime's and services' own) or of a raw one
    (a dict: tools and tests that write a payload by hand). Omitted fields stay omitted."""
    return _encoder.encode(activity)


def to_builtins(value: Any) -> Any:
    """A decoded Struct as plain JSON-ready data (for templates and re-publishing)."""
    return msgspec.to_builtins(value, builtin_types=(datetime,), enc_hook=_encode_other)


def to_json(value: Any) -> Any:
    """A Struct (or a time) as the plain data it is published as: times as their text."""
    return msgspec.json.decode(encode(value))


def instant() -> Instant:
    """Now, in UTC, to the millisecond: what a new activity's ``published`` carries."""
    moment = Instant.fromtimestamp(time.time_ns() // 1_000_000 / 1000, UTC)
    moment.rfc3339()
    return moment


def now() -> str:
    """``instant()`` as text, for a raw activity written by hand (tools, tests)."""
    return instant().rfc3339()


def new_id() -> str:
    """A fresh activity id; the one place ids are made (with ``derived_id``)."""
    return uuid.uuid4().urn


def derived_id(cause: str, *parts: str) -> str:
    """The id of an activity made *because of* another: the same on every redelivery of the
    cause, so a handler that runs twice (a crash before its ack) publishes the same activity
    twice, which subscribers skip as seen, instead of two different ones."""
    return uuid.uuid5(uuid.NAMESPACE_URL, " ".join((cause, *parts))).urn


def request_key(activity_id: str) -> str | None:
    """A question's ``urn:uuid`` id as the 32 hex digits of its reply topic's ``{request}``;
    None when the id is not a ``urn:uuid`` (there is nowhere to answer)."""
    try:
        return uuid.UUID(activity_id.removeprefix("urn:uuid:")).hex
    except ValueError:
        return None


class Envelope(TypedDict):
    """What every new activity carries and its producer does not choose."""

    context_: str
    id: str
    published: datetime


def envelope(id: str | None = None) -> Envelope:
    """``@context``, a fresh id (or the ``derived_id`` given) and ``published`` now, to spread
    into a new activity: ``act.ImageResized(**act.envelope(), type="Update", actor=..., ...)``.
    Every other field is named at the call, so mypy reports one that is missing."""
    return {"context_": AS_CONTEXT, "id": id or new_id(), "published": instant()}


def service(name: str) -> Actor:
    """A service as an activity's actor (``Bus.actor`` is its own)."""
    return Actor(type="Service", id=f"urn:dovecote:service:{name}", name=name)


def new(
    type: str,
    actor: Actor | Mapping[str, Any],
    object: Any,
    *,
    context: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A raw activity as a dict, for tools and tests that write payloads by hand (a service
    publishes typed ones: ``Bus.publish`` takes only those). ``context`` is the correlation
    id that follows one piece of work."""
    activity: dict[str, Any] = {
        "@context": AS_CONTEXT,
        "id": new_id(),
        "type": type,
        "actor": to_builtins(actor) if isinstance(actor, Actor) else dict(actor),
        "object": object,
        "published": now(),
    }
    if context is not None:
        activity["context"] = context
    activity.update({k: v for k, v in extra.items() if v is not None})
    return activity


def json_schema(kind: type[Activity]) -> dict[str, Any]:
    """The published contract for one payload type (JSON Schema 2020-12)."""
    schema: dict[str, Any] = _clean_descriptions(msgspec.json.schema(kind))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _clean_descriptions(schema: Any) -> Any:
    """Descriptions from docstrings as ``inspect.cleandoc`` gives them, whichever msgspec made
    the schema: 0.22 keeps a docstring's indentation, 0.23 removes it, and the published
    contract must not change with the installed version."""
    if isinstance(schema, dict):
        return {
            k: inspect.cleandoc(v)
            if k == "description" and isinstance(v, str)
            else _clean_descriptions(v)
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_clean_descriptions(v) for v in schema]
    return schema


def json_schema_components(
    kinds: list[type[Activity]], ref_template: str = "#/components/schemas/{name}"
) -> dict[str, Any]:
    """The same schemas as ``json_schema()``, as one set of named components whose ``$ref``s
    point at ``ref_template`` (AsyncAPI's ``components/schemas``), shared between types."""
    names = [k.__name__ for k in kinds]
    if clashes := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"different payload types share a name: {', '.join(clashes)}")
    try:
        _, components = msgspec.json.schema_components(kinds, ref_template=ref_template)
    except KeyError as exc:  # msgspec's way of saying two nested types share a name
        clash = getattr(exc.args[0], "__qualname__", exc.args[0])
        raise ValueError(f"two different types are named like {clash}: rename one") from None
    cleaned: dict[str, Any] = _clean_descriptions(dict(components))
    return cleaned
