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
from services.notifier import topics as notifier_topics
from tests import mypy_cache

PROJECT = Path(__file__).resolve().parents[1]

SNIPPET = """
from dovecote import Bus
from dovecote import activity as act
from services.builder import topics as builds
from services.notifier import topics as inbox


def fine(bus: Bus) -> None:
    state = inbox.InboxState(type="OrderedCollection", totalItems=1, unread=0)
    update = inbox.InboxUpdated(**act.envelope(), type="Update", actor=bus.actor, object=state)
    bus.publish(inbox.INBOX_STATE, update, user="ada")


def forgets_a_field(bus: Bus) -> None:
    state = inbox.InboxState(type="OrderedCollection", totalItems=1)  # refused: "unread"
    update = inbox.InboxUpdated(**act.envelope(), type="Update", actor=bus.actor, object=state)
    bus.publish(inbox.INBOX_STATE, update, user="ada")


def publishes_a_dict(bus: Bus) -> None:
    raw = act.new("Update", bus.actor, {"type": "OrderedCollection"})
    bus.publish(inbox.INBOX_STATE, raw, user="ada")  # refused: "P"


def publishes_on_the_wrong_topic(bus: Bus, build: builds.Build) -> None:
    started = builds.BuildCreated(**act.envelope(), type="Create", actor=bus.actor, object=build)
    bus.publish(builds.BUILD_PROGRESS, started)  # refused: "P"
"""


HANDLERS = """
from dovecote import Delivery, Service, handles
from dovecote import activity as act
from services.builder import topics
from services.gateway import topics as commands


class Builder(Service):
    name = "builder"

    @handles(commands.BUILD_START)
    async def on_start(self, start: commands.StartBuild, delivery: Delivery) -> None:
        assert start.object.type  # the payload's own fields, typed

    @handles(topics.BUILD_PROGRESS, topics.BUILD_SUCCEEDED)
    async def on_any_update(self, update: act.Activity, delivery: Delivery) -> None:
        pass

    @handles("events/#")  # a filter: any activity
    async def on_event(self, activity: act.Activity, delivery: Delivery) -> None:
        pass


class Confused(Service):
    name = "confused"

    @handles(topics.BUILD_PROGRESS)  # refused: [Confused, BuildUpdated, Delivery]
    async def on_progress(self, start: commands.StartBuild, delivery: Delivery) -> None:
        pass

    @handles(commands.BUILD_START, topics.BUILD_PROGRESS)  # refused: StartBuild | BuildUpdated,
    async def on_two(self, start: commands.StartBuild, delivery: Delivery) -> None:
        pass


async def decoded(builder: Builder, payload: bytes, delivery: Delivery) -> None:
    start = commands.BUILD_START.codec.decode(payload)
    await builder.on_start(start, delivery)
    await builder.on_start(start.object, delivery)  # refused: type "BuildRequest";
"""


def mypy_refusals(snippet: str, tmp_path: Path) -> None:
    """Run mypy, with the project's settings, on ``snippet``: the lines marked ``# refused:
    <part of the message>`` must be refused with that message, every other line must pass."""
    path = tmp_path / "snippet.py"
    path.write_text(snippet)
    expected = {
        n: want
        for n, line in enumerate(snippet.splitlines(), 1)
        if (want := line.partition("# refused: ")[2])
    }
    mypy = [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--no-error-summary"]
    run = subprocess.run(
        # The snippets import the whole library: its modules come from the lint run's cache.
        [*mypy, "--cache-dir", str(mypy_cache.seeded(tmp_path / "mypy-cache")), str(path)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = {
        int(m["line"]): m["message"]
        for m in re.finditer(r"snippet\.py:(?P<line>\d+): error: (?P<message>.*)", run.stdout)
    }
    assert set(found) == set(expected), run.stdout + run.stderr
    for line, want in expected.items():
        assert want in found[line], (line, found[line])


def test_mypy_refuses_a_missing_field_a_dict_and_another_topics_payload(tmp_path: Path) -> None:
    mypy_refusals(SNIPPET, tmp_path)


def test_mypy_refuses_a_handler_that_takes_another_topics_payload(tmp_path: Path) -> None:
    """``@handles(TOPIC)`` types its handler: the activity it takes is the topic's payload
    type (or a wider one), and the topic's codec decodes to that type."""
    mypy_refusals(HANDLERS, tmp_path)


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
    about = notifier_topics.NotifiedActivity(
        type="Create", id="urn:uuid:cause", actor=grace, object={"type": "Image"}
    )
    note = notifier_topics.Notification(
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
    notifier_topics.NOTIFICATION.codec.decode(act.encode(note))
