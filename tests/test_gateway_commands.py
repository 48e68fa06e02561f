"""The gateway's whitelist of browser commands."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dovecote import activity as act
from services.gateway import topics as gateway_topics
from services.gateway.bus import commands
from services.gateway.bus.hub import envelope

ADA = act.Actor(type="Person", id="http://localhost:8080/users/ada", name="Ada")


def test_start_and_stop_become_registry_commands() -> None:
    entry, a = commands.parse("build.start", {"shouldFail": True}, ADA)
    assert entry is gateway_topics.BUILD_START
    assert orjson.loads(act.encode(a)) == {
        "@context": act.AS_CONTEXT,
        "id": a.id,
        "type": "Start",
        "actor": {"type": "Person", "id": ADA.id, "name": "Ada"},
        "object": {"type": "Build", "shouldFail": True},
        "published": orjson.loads(act.encode(a.published)),
        "context": a.id,  # a command starts its own correlation
    }
    entry, a = commands.parse("build.stop", {"id": "urn:uuid:1"}, ADA)
    assert entry is gateway_topics.BUILD_STOP and orjson.loads(act.encode(a))["object"] == {
        "type": "Build",
        "id": "urn:uuid:1",
    }


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("build.explode", {}, "unknown command"),
        (None, {}, "unknown command"),
        (["build.start"], {}, "unknown command"),
        ("build.start", [], "JSON object"),
        ("build.start", {"shouldFail": "yes"}, "shouldFail must be bool"),
        ("build.start", {"rm -rf": True}, "unknown field"),
        ("build.stop", {"id": 5}, "id must be str"),
        ("build.stop", {"id": "not an iri"}, "not a valid StopBuild"),
    ],
)
def test_anything_else_is_refused_with_a_reason(name: Any, body: Any, reason: str) -> None:
    with pytest.raises(commands.CommandError, match=reason):
        commands.parse(name, body, ADA)


def test_envelope_carries_the_payload_bytes_untouched() -> None:
    payload = b'{"a": 1,   "odd spacing": "\\u00e9"}'
    frame = envelope(42, "0123456789ab", "dovecote/events/x", payload)
    assert frame == (
        b'{"seq":42,"key":"0123456789ab","topic":"dovecote/events/x","activity":' + payload + b"}"
    )
    assert orjson.loads(frame)["activity"] == orjson.loads(payload)
