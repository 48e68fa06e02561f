"""AS2 model and codec: what is accepted, and the reasons for what is not."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dovecote import activity as act
from dovecote import topics
from services.builder import topics as builder_topics
from services.gateway import topics as gateway_topics

ACTOR = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


def start(**changes: Any) -> dict[str, Any]:
    a = act.new("Start", ACTOR, {"type": "Build", "shouldFail": True}, context="urn:uuid:1")
    a.update(changes)
    return a


def test_new_activity_has_every_required_property() -> None:
    a = start()
    assert a["@context"] == act.AS_CONTEXT
    assert a["id"].startswith("urn:uuid:")
    assert a["published"].endswith("Z")
    decoded = gateway_topics.BUILD_START.codec.decode(act.encode(a))
    assert decoded.object.shouldFail is True
    assert decoded.context == "urn:uuid:1"
    assert decoded.actor.name == "Ada"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1,2,3]", "Expected `object`"),
        (b'"just a string"', "Expected `object`"),
        (orjson.dumps({"hello": "world"}), "missing required field"),
        (act.encode(start(**{"@context": "https://example.com/ns"})), "@context"),
        (act.encode(start(type="Explode")), "Start"),
        (act.encode(start(published="yesterday")), "published"),
        (act.encode(start(published="2026-01-01T10:00:00")), "published"),  # no time zone
        (act.encode(start(id="not an iri")), "$.id"),
        (act.encode(start(actor={"id": "x"})), "actor"),
        (act.encode(start(object={"type": "Build", "shouldFail": "yes"})), "shouldFail"),
        ("\udcff".encode("utf-8", "surrogatepass"), "malformed JSON"),
    ],
)
def test_invalid_payloads_fail_with_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(act.InvalidActivity) as err:
        gateway_topics.BUILD_START.codec.decode(payload)
    assert reason in str(err.value)


def test_unknown_properties_are_allowed_as_as2_is_extensible() -> None:
    a = start(**{"dovecote:extra": {"x": 1}})
    assert gateway_topics.BUILD_START.codec.decode(act.encode(a)).id == a["id"]


def test_context_may_be_a_list_that_includes_as2() -> None:
    a = start(**{"@context": [act.AS_CONTEXT, {"ex": "https://example.com/ns#"}]})
    gateway_topics.BUILD_START.codec.decode(act.encode(a))


def test_progress_outside_0_100_is_refused() -> None:
    build = {"type": "Build", "id": "urn:uuid:2", "name": "B", "state": "running", "progress": 140}
    with pytest.raises(act.InvalidActivity, match="progress"):
        builder_topics.BUILD_PROGRESS.codec.decode(act.encode(act.new("Update", ACTOR, build)))


def test_json_schema_is_generated_from_the_same_types() -> None:
    schema = act.json_schema(gateway_topics.StartBuild)
    start_def = schema["$defs"]["StartBuild"]
    assert set(start_def["required"]) >= {"@context", "id", "type", "actor", "object", "published"}
    assert start_def["properties"]["type"] == {"enum": ["Start"]}


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_a_payload_nested_too_deeply_is_invalid_not_a_recursion_error(depth: int) -> None:
    deep = start(type="Reject", object=None, target=None)
    payload = act.encode(deep).replace(b'"target":null', b'"target":' + b"[" * depth + b"]" * depth)
    for codec in (topics.PRESENCE_QUERY.codec, builder_topics.BUILD_REJECTED.codec):
        with pytest.raises(act.InvalidActivity, match="nested too deeply"):
            codec.decode(payload)
