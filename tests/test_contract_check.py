"""`dovecote contract check`: every change since a baseline, judged for the subscribers not yet
upgraded (consumers) and for the producers not yet upgraded, as a rolling upgrade meets them."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
import yaml

from dovecote import topics
from dovecote.project import PROJECT
from dovecote.tools import asyncapi, compat, contract

PARSER_DIR = PROJECT / "tests" / "asyncapi"


@pytest.fixture(scope="module")
def now() -> dict[str, Any]:
    return contract.current()


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"][name]
    return found


def judged(old: dict[str, Any], new: dict[str, Any], topic: str) -> list[compat.Change]:
    return [c for c in compat.compare(old, new) if c.topic == topic]


def one(changes: list[compat.Change], where: str) -> compat.Change:
    [found] = [c for c in changes if c.where == where]
    return found


START = "commands/builder/start"  # StartBuild, whose object is a BuildRequest


def test_the_registry_keeps_the_released_contract(now: dict[str, Any]) -> None:
    """What make check asks: nothing breaking since the last release."""
    released = contract.baseline(str(contract.RELEASED))
    assert [c.line() for c in compat.compare(released, now) if c.breaking] == []
    assert compat.compare(now, copy.deepcopy(now)) == []


def test_an_optional_field_added_or_removed_is_compatible(now: dict[str, Any]) -> None:
    new = copy.deepcopy(now)
    schema(new, "BuildRequest")["properties"]["colour"] = {"type": "string"}
    added = one(judged(now, new, START), "object.colour")
    assert not added.breaking and added.what == "optional field added"
    removed = one(judged(new, now, START), "object.colour")
    assert not removed.breaking and removed.what == "field removed"


def test_a_required_field_added_breaks_the_producers_not_yet_upgraded(now: dict[str, Any]) -> None:
    new = copy.deepcopy(now)
    request = schema(new, "BuildRequest")
    request["properties"]["colour"] = {"type": "string"}
    request["required"].append("colour")
    change = one(judged(now, new, START), "object.colour")
    assert change.breaking and change.consumers_ok and not change.producers_ok
    assert "upgraded subscribers refuse the payloads of producers not yet upgraded" in change.line()
    # Removing a required field breaks the other side: old subscribers still need it.
    gone = one(judged(new, now, START), "object.colour")
    assert (
        gone.breaking and not gone.consumers_ok and gone.what == "field removed (it was required)"
    )


def test_required_made_optional_and_back(now: dict[str, Any]) -> None:
    new = copy.deepcopy(now)
    schema(new, "BuildRequest")["required"].remove("type")
    loosened = one(judged(now, new, START), "object.type")
    assert loosened.what == "no longer required" and not loosened.consumers_ok
    tightened = one(judged(new, now, START), "object.type")
    assert tightened.what == "now required" and not tightened.producers_ok


def test_enums_widened_break_consumers_and_narrowed_break_producers(now: dict[str, Any]) -> None:
    new = copy.deepcopy(now)
    schema(new, "BuildRequest")["properties"]["type"]["enum"].append("Pipeline")
    wider = one(judged(now, new, START), "object.type")
    assert wider.what == 'now allows "Pipeline"' and not wider.consumers_ok and wider.producers_ok
    narrower = one(judged(new, now, START), "object.type")
    assert narrower.what == 'no longer allows "Pipeline"' and not narrower.producers_ok


def test_bounds_and_types(now: dict[str, Any]) -> None:
    new = copy.deepcopy(now)
    name = schema(new, "BuildRequest")["properties"]["name"]
    [text] = [alt for alt in name["anyOf"] if alt.get("type") == "string"]
    text["maxLength"] = 100
    tighter = one(judged(now, new, START), "object.name")
    assert tighter.what == "maxLength 200 -> 100" and not tighter.producers_ok
    assert tighter.consumers_ok
    should_fail = schema(new, "BuildRequest")["properties"]["shouldFail"]
    should_fail["type"] = "integer"
    retyped = one(judged(now, new, START), "object.shouldFail")
    assert retyped.what == "type boolean -> integer"
    assert not retyped.consumers_ok and not retyped.producers_ok
    name["anyOf"].append({"type": "integer"})
    union = [c for c in judged(now, new, START) if c.where == "object.name"]
    assert any(c.what == "may now be integer" and not c.consumers_ok for c in union)


def test_topic_level_changes(now: dict[str, Any]) -> None:
    new = copy.deepcopy(now)
    progress = asyncapi.channel_id(topics_by_pattern("events/build/progress"))
    del new["channels"][progress]
    new["operations"] = {
        k: op for k, op in new["operations"].items() if not op["channel"]["$ref"].endswith(progress)
    }
    [removed] = judged(now, new, "events/build/progress")
    assert removed.what.startswith("topic removed") and not removed.consumers_ok
    [added] = judged(new, now, "events/build/progress")
    assert added.what == "topic added" and not added.breaking

    moved = copy.deepcopy(now)
    send = moved["operations"][f"send{progress[0].upper()}{progress[1:]}"]
    send["bindings"]["mqtt"]["qos"] = 1
    assert [c.what for c in judged(now, moved, "events/build/progress")] == ["QoS 0 -> 1"]
    assert not judged(moved, now, "events/build/progress")[0].consumers_ok  # 1 -> 0
    send["bindings"]["mqtt"]["retain"] = True
    send["tags"] = [{"name": "gateway"}]
    whats = {
        c.what.split(":")[0] for c in judged(now, moved, "events/build/progress") if c.breaking
    }
    assert whats == {"publisher builder -> gateway", "now retained"}


def topics_by_pattern(pattern: str) -> topics.Topic:
    [found] = [t for t in topics.all_topics() if t.pattern == pattern]
    return found


def test_every_consumer_ignores_fields_it_does_not_know(now: dict[str, Any]) -> None:
    """Why an optional field added is compatible: no payload type forbids unknown fields,
    and a real payload with an extra field decodes as its type."""
    for t in topics.all_topics():
        strict = [
            k.cls.__name__ for k in structs(mi.type_info(t.payload)) if k.forbid_unknown_fields
        ]
        assert strict == [], f"{t.pattern}: {strict} refuse unknown fields"
    raw = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": "urn:uuid:0b6f8d0e-2c64-4e1a-9d6b-3f1f6c1f9a10",
        "type": "Start",
        "actor": {"type": "Person", "id": "urn:person:ada", "name": "Ada", "mood": "curious"},
        "object": {"type": "Build", "shouldFail": False, "colour": "teal"},
        "published": "2026-12-07T09:00:00Z",
        "addedLater": {"any": ["shape"]},
    }
    start = topics_by_pattern(START)
    decoded = msgspec.json.decode(json.dumps(raw).encode(), type=start.payload)
    assert decoded.object.shouldFail is False


def structs(kind: mi.Type, seen: set[type] | None = None) -> list[mi.StructType]:
    """Every struct type reachable from ``kind``: its fields', items', alternatives'."""
    seen = set() if seen is None else seen
    if isinstance(kind, mi.Metadata):
        return structs(kind.type, seen)
    if isinstance(kind, mi.StructType):
        if kind.cls in seen:
            return []
        seen.add(kind.cls)
        return [kind] + [s for f in kind.fields for s in structs(f.type, seen)]
    if isinstance(kind, mi.UnionType):
        return [s for k in kind.types for s in structs(k, seen)]
    inner = [getattr(kind, a) for a in ("item_type", "value_type") if hasattr(kind, a)]
    return [s for k in inner for s in structs(k, seen)]


def write(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_command_exits_1_on_a_breaking_change_and_names_it(
    now: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert contract.check(str(write(now, tmp_path / "same.yaml"))) == 0
    assert "0 change(s), 0 breaking" in capsys.readouterr().out
    # A baseline in which BuildRequest had a field the registry has since removed.
    old = copy.deepcopy(now)
    request = schema(old, "BuildRequest")
    request["properties"]["priority"] = {"type": "integer"}
    request["required"].append("priority")
    assert contract.check(str(write(old, tmp_path / "old.yaml"))) == 1
    out = capsys.readouterr().out
    assert f"BREAKING   {START} object.priority: field removed (it was required)" in out
    assert "1 breaking" in out
    assert contract.check("no-such-ref-or-file") == 2
    assert "neither a file nor a git ref" in capsys.readouterr().err


def test_against_a_git_ref_of_this_repository(capsys: pytest.CaptureFixture[str]) -> None:
    if not (PROJECT / ".git").exists():
        pytest.fail("the contract check compares with git refs: run the tests in a git clone")
    assert contract.check("HEAD") in (0, 1)  # HEAD's committed contract, whatever it holds
    assert "contract against HEAD:" in capsys.readouterr().out


def asyncapi_diff(before: Path, after: Path) -> dict[str, list[str]]:
    node = shutil.which("node")
    if node is None or not (PARSER_DIR / "node_modules" / "@asyncapi" / "diff").is_dir():
        pytest.fail(
            "@asyncapi/diff is not installed: run make test (npm ci --prefix tests/asyncapi)"
        )
    r = subprocess.run(
        [node, str(PARSER_DIR / "diff.mjs"), str(before), str(after)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    verdict: dict[str, list[str]] = json.loads(r.stdout)
    return verdict


@pytest.mark.npm
def test_the_asyncapi_initiative_s_diff_agrees_as_a_second_opinion(
    now: dict[str, Any], tmp_path: Path
) -> None:
    """@asyncapi/diff knows no JSON Schema compatibility (any payload edit is breaking to it),
    so it is asked what it can judge: nothing breaking since the release, and a topic removed
    is breaking to both."""
    released = contract.RELEASED
    current = write(now, tmp_path / "now.yaml")
    ours = [c for c in compat.compare(contract.baseline(str(released)), now) if c.breaking]
    assert ours == [] and asyncapi_diff(released, current)["breaking"] == []
    fewer = copy.deepcopy(now)
    progress = asyncapi.channel_id(topics_by_pattern("events/build/progress"))
    del fewer["channels"][progress]
    fewer["operations"] = {
        k: op
        for k, op in fewer["operations"].items()
        if not op["channel"]["$ref"].endswith(progress)
    }
    theirs = asyncapi_diff(current, write(fewer, tmp_path / "fewer.yaml"))["breaking"]
    assert f"remove /channels/{progress}" in theirs
    assert any(c.breaking for c in judged(now, fewer, "events/build/progress"))
