"""W3C Activity Streams 2.0 payloads: the typed model, the codec and its validation.

Inbound payloads are decoded *and* validated in one step by msgspec into the topic's
payload type (~3 us a message, see docs/performance.md); a payload that does not conform
raises ``InvalidActivity`` with a reason a person can act on. Outbound activities are the same
Structs, built by their producers (``BuildUpdated(**envelope(), type="Update", ...)``), so mypy
reports a producer that forgets a field or puts the wrong type on a topic; ``encode()`` writes
them with msgspec. The JSON Schema that documents the contract is
generated from the same types (``json_schema()``), so code and contract cannot drift: every
field says what it means (``doc()``), and a test fails on a field that does not.

Here are the base types (from ``dovecote.as2``), the runtime's own payloads (presence, dead
letters, metrics, traces: ``dovecote.payloads``), re-exported so ``act.Presence`` is one
import away, and the codec. A federation's payloads are its services' (their ``topics.py``).

There is no official AS2 JSON Schema; this one is deliberately open: unknown properties
are allowed (AS2 is extensible), the properties Dovecote relies on are checked.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypedDict

import msgspec
from typing_extensions import TypeVar

from dovecote.as2 import (  # re-exported
    AS_CONTEXT as AS_CONTEXT,
)
from dovecote.as2 import (
    MEDIA_TYPE as MEDIA_TYPE,
)
from dovecote.as2 import (
    Activity as Activity,
)
from dovecote.as2 import (
    Actor as Actor,
)
from dovecote.as2 import (
    Iri as Iri,
)
from dovecote.as2 import (
    Model as Model,
)
from dovecote.as2 import (
    Name as Name,
)
from dovecote.as2 import (
    Percent as Percent,
)
from dovecote.as2 import (
    Published as Published,
)
from dovecote.as2 import (
    Text as Text,
)
from dovecote.as2 import (
    doc as doc,
)
from dovecote.errors import InvalidActivity as InvalidActivity  # re-exported: act.InvalidActivity
from dovecote.payloads.letters import (  # re-exported
    DeadLetter as DeadLetter,
)
from dovecote.payloads.letters import (
    DeadLetterReply as DeadLetterReply,
)
from dovecote.payloads.letters import (
    LetterQuery as LetterQuery,
)
from dovecote.payloads.letters import (
    LetterReport as LetterReport,
)
from dovecote.payloads.letters import (
    LetterSelection as LetterSelection,
)
from dovecote.payloads.letters import (
    LetterSummary as LetterSummary,
)
from dovecote.payloads.letters import (
    ListDeadLetters as ListDeadLetters,
)
from dovecote.payloads.letters import (
    ParkedMessage as ParkedMessage,
)
from dovecote.payloads.letters import (
    Redelivery as Redelivery,
)
from dovecote.payloads.letters import (
    ReplayDeadLetters as ReplayDeadLetters,
)
from dovecote.payloads.metrics import (  # re-exported
    Count as Count,
)
from dovecote.payloads.metrics import (
    Label as Label,
)
from dovecote.payloads.metrics import (
    Latency as Latency,
)
from dovecote.payloads.metrics import (
    MetricsReport as MetricsReport,
)
from dovecote.payloads.metrics import (
    ReadingName as ReadingName,
)
from dovecote.payloads.metrics import (
    WorkerMeasurements as WorkerMeasurements,
)
from dovecote.payloads.presence import (  # re-exported
    Presence as Presence,
)
from dovecote.payloads.presence import (
    ServiceInstance as ServiceInstance,
)
from dovecote.payloads.traces import (  # re-exported
    Trace as Trace,
)
from dovecote.payloads.traces import (
    TraceQuery as TraceQuery,
)
from dovecote.payloads.traces import (
    TraceReply as TraceReply,
)
from dovecote.payloads.traces import (
    TraceStep as TraceStep,
)
from dovecote.payloads.traces import (
    ViewTrace as ViewTrace,
)

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
    into a new activity: ``act.Presence(**act.envelope(), type="Join", actor=..., ...)``.
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
