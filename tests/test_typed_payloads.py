"""Outbound payloads are typed: mypy, with the project's own settings, refuses a producer that
forgets a required field, publishes a hand-made dict, or puts another topic's payload type on
a topic. Each line the checker must refuse says so (``# refused: <what mypy says>``); every
other line must pass, so a snippet that stopped type-checking at all would fail here too."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson

from dovecote import activity as act
from dovecote import topics

PROJECT = Path(__file__).resolve().parents[1]

SNIPPET = """
from dovecote import Bus, topics
from dovecote import activity as act


def fine(bus: Bus) -> None:
    state = act.InboxState(type="OrderedCollection", totalItems=1, unread=0)
    update = act.InboxUpdated(**act.envelope(), type="Update", actor=bus.actor, object=state)
    bus.publish(topics.INBOX_STATE, update, user="ada")


def forgets_a_field(bus: Bus) -> None:
    state = act.InboxState(type="OrderedCollection", totalItems=1)  # refused: "unread"
    update = act.InboxUpdated(**act.envelope(), type="Update", actor=bus.actor, object=state)
    bus.publish(topics.INBOX_STATE, update, user="ada")


def publishes_a_dict(bus: Bus) -> None:
    raw = act.new("Update", bus.actor, {"type": "OrderedCollection"})
    bus.publish(topics.INBOX_STATE, raw, user="ada")  # refused: "P"


def publishes_on_the_wrong_topic(bus: Bus, build: act.Build) -> None:
    started = act.BuildCreated(**act.envelope(), type="Create", actor=bus.actor, object=build)
    bus.publish(topics.BUILD_PROGRESS, started)  # refused: "P"
"""


# mypy's incremental cache, kept between runs (git ignores it): the library is checked again
# only when it changed, so the snippet costs a fraction of a second, not a cold check.
MYPY_CACHE = PROJECT / ".mypy_cache" / "snippets"


def test_mypy_refuses_a_missing_field_a_dict_and_another_topics_payload(tmp_path: Path) -> None:
    snippet = tmp_path / "producer.py"
    snippet.write_text(SNIPPET)
    expected = {
        n: want
        for n, line in enumerate(SNIPPET.splitlines(), 1)
        if (want := line.partition("# refused: ")[2])
    }
    mypy = [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--no-error-summary"]
    run = subprocess.run(
        [*mypy, "--cache-dir", str(MYPY_CACHE), str(snippet)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = {
        int(m["line"]): m["message"]
        for m in re.finditer(r"producer\.py:(?P<line>\d+): error: (?P<message>.*)", run.stdout)
    }
    assert set(found) == set(expected), run.stdout + run.stderr
    for line, want in expected.items():
        assert want in found[line], (line, found[line])


def test_activity_ids_are_made_in_one_place() -> None:
    """``act.new_id`` and ``act.derived_id`` make every activity id: a producer that made its
    own (a raw ``uuid5``, a ``uuid4().urn``) could make one the runtime's dedupe and the
    derived ids of redeliveries do not agree with. Other random names (client ids, tokens,
    file names) are not activity ids and may use ``uuid`` directly."""
    helper = PROJECT / "shared" / "dovecote" / "activity.py"
    found = [
        f"{path.relative_to(PROJECT)}:{n}: {line.strip()}"
        for folder in ("shared", "services", "bench", "examples")
        for path in sorted((PROJECT / folder).rglob("*.py"))
        if path != helper
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"uuid\.uuid5\(|uuid\d?\(\)\.urn|NAMESPACE_URL", line)
    ]
    assert not found, "make activity ids with act.new_id() or act.derived_id():\n" + "\n".join(
        found
    )


def test_a_typed_activity_is_the_json_its_hand_made_dict_was() -> None:
    """What moved from dicts to Structs publishes the same JSON: fields by their AS2 names
    (``@context``), defaults left out as the dicts left them out, ``published`` to the
    millisecond with ``Z``."""
    grace = act.Actor(type="Person", id="http://gw/users/grace", preferredUsername="grace")
    envelope = act.envelope(act.derived_id("urn:uuid:cause", grace.id))
    about = act.NotifiedActivity(
        type="Create", id="urn:uuid:cause", actor=grace, object={"type": "Image"}
    )
    note = act.Notification(
        **envelope,
        type="Announce",
        actor=act.service("notifier"),
        object=about,
        context="urn:uuid:ctx",
        summary="Grace shared a photo",
        to=[grace.id],
    )
    raw = act.new(
        "Announce",
        {"type": "Service", "id": "urn:dovecote:service:notifier", "name": "notifier"},
        {"type": "Create", "id": "urn:uuid:cause", "actor": act.to_builtins(grace)},
        context="urn:uuid:ctx",
        summary="Grace shared a photo",
        to=[grace.id],
    )
    raw["object"]["object"] = {"type": "Image"}
    raw["id"] = envelope["id"]
    published = orjson.loads(act.encode(note))["published"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", published)
    raw["published"] = published
    assert orjson.loads(act.encode(note)) == raw
    topics.NOTIFICATION.codec.decode(act.encode(note))
