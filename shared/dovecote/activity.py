"""W3C Activity Streams 2.0 payloads: the typed model, the codec and its validation.

Inbound payloads are decoded *and* validated in one step by msgspec into the topic's
payload type (~3 us a message, see docs/performance.md); a payload that does not conform raises
``InvalidActivity`` with a reason a person can act on. Outbound activities are plain dicts
built by ``new()`` and encoded with orjson. The JSON Schema that documents the contract is
generated from the same types (``json_schema()``), so code and contract cannot drift.

There is no official AS2 JSON Schema; this one is deliberately open: unknown properties
are allowed (AS2 is extensible), the properties Dovecote relies on are checked.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson
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


class Model(Struct, kw_only=True, omit_defaults=True):
    """Base of every AS2 object here: keyword-only, open to unknown properties."""


class Actor(Model):
    id: Iri
    type: Literal["Person", "Service", "Application", "Group", "Organization"]
    name: Name | None = None
    # Only people have an inbox of notifications; services and apps need no more than an id.
    followers: Iri | None = None
    icon: Iri | None = None
    # The user's id in the directory: what a per-user topic level is made of.
    preferredUsername: Name | None = None


class Activity(Model, rename={"context_": "@context"}):
    """Every Dovecote payload. Subclasses narrow ``type`` and ``object`` per topic."""

    context_: str | list[str | dict[str, Any]]
    id: Iri
    type: Name
    actor: Actor
    object: Any
    published: Published
    target: Any = None
    result: Any = None
    context: Annotated[str, Meta(max_length=200)] | None = None  # correlation id
    summary: Text | None = None

    def __post_init__(self) -> None:
        contexts = self.context_ if isinstance(self.context_, list) else [self.context_]
        if AS_CONTEXT not in contexts:
            raise ValueError(f"`@context` must include {AS_CONTEXT}")


# --- build -------------------------------------------------------------------------------

BuildState = Literal["running", "succeeded", "failed", "stopped"]


class BuildRequest(Model):
    type: Literal["Build"]
    shouldFail: bool = False  # the seed's demo: fail at 70 %
    name: Name | None = None


class BuildRef(Model):
    type: Literal["Build"]
    id: Iri | None = None  # None: whichever build is running


class Build(Model):
    type: Literal["Build"]
    id: Iri
    name: Name
    state: BuildState
    progress: Percent
    shouldFail: bool = False
    startTime: Published | None = None
    endTime: Published | None = None
    attributedTo: Actor | None = None  # who asked for it
    worker: Name | None = None  # the builder instance running it


class StartBuild(Activity):
    type: Literal["Start"]
    object: BuildRequest


class StopBuild(Activity):
    type: Literal["Stop"]
    object: BuildRef


class BuildCreated(Activity):
    type: Literal["Create"]
    object: Build


class BuildUpdated(Activity):
    type: Literal["Update"]
    object: Build


class BuildRejected(Activity):
    """The builder refused a command; ``summary`` says why, ``object`` is the command."""

    type: Literal["Reject"]
    object: Any


class BuildHistory(Model):
    type: Literal["OrderedCollection"]
    totalItems: Annotated[int, Meta(ge=0)]
    orderedItems: Annotated[list[Build], Meta(max_length=100)]


class BuildHistoryUpdated(Activity):
    type: Literal["Update"]
    object: BuildHistory


# --- images ------------------------------------------------------------------------------

ImageMediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
Pixels = Annotated[int, Meta(ge=1, le=100_000)]


class Image(Model):
    """An uploaded image. ``id`` and ``url`` are the gateway's REST resource of the original."""

    type: Literal["Image"]
    id: Iri
    url: Iri
    mediaType: ImageMediaType
    name: Name
    width: Pixels
    height: Pixels
    size: Annotated[int, Meta(ge=1)]  # bytes of the original (an extension property)
    attributedTo: Actor | None = None


class Thumbnail(Model):
    """One re-encoded, smaller copy of an image (an AS2 ``Link`` with its dimensions)."""

    type: Literal["Link"]
    href: Iri
    mediaType: ImageMediaType
    width: Pixels
    height: Pixels
    rel: Literal["preview"] = "preview"


class ResizedImage(Model):
    type: Literal["Image"]
    id: Iri
    url: Iri
    preview: Annotated[list[Thumbnail], Meta(min_length=1, max_length=8)]  # smallest first
    name: Name | None = None


class ImageCreated(Activity):
    type: Literal["Create"]
    object: Image


class ImageResized(Activity):
    """The resizer stored thumbnails of an image; ``object.preview`` lists them."""

    type: Literal["Update"]
    object: ResizedImage


# --- notifications and points --------------------------------------------------------------


class NotifiedActivity(Model):
    """What a notification is about: the original activity, cut down to what a page shows."""

    type: Name
    id: Iri
    actor: Actor
    object: Any  # the image or build, as the original carried it


class Notification(Activity, kw_only=True):
    """One notification for one person (``to``), on that person's own topic."""

    type: Literal["Announce"]
    object: NotifiedActivity
    to: Annotated[list[Iri], Meta(min_length=1, max_length=1)]  # required, though new


class Award(Model):
    type: Literal["Award"]
    id: Iri
    rule: Name  # which rule of the points service gave it, e.g. "upload"
    points: int
    total: int  # the person's total after this award
    cause: Iri  # the id of the activity that earned it


class PointsAwarded(Activity):
    """``target`` is the person who earned the points."""

    type: Literal["Add"]
    object: Award
    target: Actor


class Standing(Model):
    type: Literal["Person"]
    id: Iri
    points: int
    name: Name | None = None
    preferredUsername: Name | None = None


class Leaderboard(Model):
    type: Literal["OrderedCollection"]
    totalItems: Annotated[int, Meta(ge=0)]
    orderedItems: Annotated[list[Standing], Meta(max_length=100)]  # most points first


class LeaderboardUpdated(Activity):
    type: Literal["Update"]
    object: Leaderboard


# --- presence and dead letters -----------------------------------------------------------


class ServiceInstance(Model):
    type: Literal["Service"]
    id: Iri
    name: Name
    instance: Name
    status: Literal["online", "offline"]
    pid: int | None = None
    host: Name | None = None


class Presence(Activity):
    type: Literal["Join", "Leave"]
    object: ServiceInstance


class ParkedMessage(Model):
    type: Literal["Object"]
    name: Annotated[str, Meta(max_length=65535)]  # the original topic
    mediaType: Literal["application/activity+json", "application/octet-stream;base64"]
    content: str  # the original payload: text, or base64 when it was not UTF-8
    size: int  # bytes of the original payload (content may be cut short)
    attempts: Annotated[int, Meta(ge=0)]


class DeadLetter(Activity):
    """A message a service could not process, parked with the reason (``summary``)."""

    type: Literal["Flag"]
    object: ParkedMessage


class Redelivery(Activity):
    """Un-park a dead letter: the service that parked it handles the original payload again,
    as if it had just arrived on its original topic (``object.object.name``)."""

    type: Literal["Undo"]
    object: DeadLetter


class LetterQuery(Model):
    type: Literal["Collection"]
    service: Name | None = None  # only this service's letters
    limit: Annotated[int, Meta(ge=1, le=1000)] = 100


class ListDeadLetters(Activity):
    """An operator asks the deadletters service what it holds (``dovecote deadletter list``)."""

    type: Literal["View"]
    object: LetterQuery


class LetterSelection(Model):
    type: Literal["Collection"]
    items: Annotated[list[Iri], Meta(max_length=1000)] = []  # letter ids
    service: Name | None = None  # with ``all``: only this service's letters
    all: bool = False  # every letter not replayed yet


class ReplayDeadLetters(Activity):
    """An operator asks for letters to be replayed (``dovecote deadletter replay``)."""

    type: Literal["Undo"]
    object: LetterSelection


class LetterSummary(Model):
    type: Literal["Flag"]
    id: Iri
    service: Name
    topic: Annotated[str, Meta(max_length=65535)]  # the original topic
    summary: Text  # the reason
    attempts: int
    size: int
    published: Published  # when the service parked it
    replays: int = 0  # how often it was replayed
    lastReplayed: Published | None = None


class LetterReport(Model):
    type: Literal["OrderedCollection"]
    totalItems: int  # letters held that match, beyond those listed
    orderedItems: list[LetterSummary] = []
    missing: list[Iri] = []  # asked-for letter ids the service does not hold


class DeadLetterReply(Activity, kw_only=True):
    """The deadletters service's answer to one operator command (``inReplyTo`` its id)."""

    type: Literal["Accept", "Reject"]
    object: LetterReport
    inReplyTo: Iri


# --- codec -------------------------------------------------------------------------------


class Codec:
    """Decodes and validates one payload type. Build one per topic, reuse it."""

    def __init__(self, kind: type[Activity]) -> None:
        self.kind = kind
        self._decoder = msgspec.json.Decoder(kind)

    def decode(self, payload: bytes | bytearray | memoryview | str) -> Any:
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


def encode(activity: Mapping[str, Any]) -> bytes:
    return orjson.dumps(activity)


def to_builtins(value: Any) -> Any:
    """A decoded Struct as plain JSON-ready data (for templates and re-publishing)."""
    return msgspec.to_builtins(value, builtin_types=(datetime,))


def now() -> str:
    """RFC 3339, UTC, millisecond precision: what ``published`` carries."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return uuid.uuid4().urn


def derived_id(cause: str, *parts: str) -> str:
    """The id of an activity made *because of* another: the same on every redelivery of the
    cause, so a handler that runs twice (a crash before its ack) publishes the same activity
    twice, which subscribers skip as seen, instead of two different ones."""
    return uuid.uuid5(uuid.NAMESPACE_URL, " ".join((cause, *parts))).urn


def new(
    type: str,
    actor: Mapping[str, Any],
    object: Any,
    *,
    context: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A fresh activity. ``context`` is the correlation id that follows one piece of work."""
    activity: dict[str, Any] = {
        "@context": AS_CONTEXT,
        "id": new_id(),
        "type": type,
        "actor": dict(actor),
        "object": object,
        "published": now(),
    }
    if context is not None:
        activity["context"] = context
    activity.update({k: v for k, v in extra.items() if v is not None})
    return activity


def service_actor(service: str) -> dict[str, str]:
    return {"type": "Service", "id": f"urn:dovecote:service:{service}", "name": service}


def json_schema(kind: type[Activity]) -> dict[str, Any]:
    """The published contract for one payload type (JSON Schema 2020-12)."""
    schema: dict[str, Any] = msgspec.json.schema(kind)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
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
    return dict(components)
