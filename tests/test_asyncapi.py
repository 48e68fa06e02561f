"""docs/asyncapi.yaml: generated from the registry, valid by the project's check and by the
official @asyncapi/parser, and each planted mistake caught with a clear message."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dovecote import activity as act
from dovecote import topics
from dovecote.tools import asyncapi, docs, manifest

PARSER_DIR = Path(__file__).resolve().parent / "asyncapi"
INSTALL = "make test (or: npm ci --prefix tests/asyncapi --ignore-scripts)"


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    manifest.load()
    doc: dict[str, Any] = asyncapi.load(docs.ASYNCAPI_YAML)
    return doc


def planted(tmp_path: Path, doc: dict[str, Any], name: str) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_the_generated_document_passes_the_project_check(committed: dict[str, Any]) -> None:
    assert asyncapi.check(committed) == []
    assert asyncapi.main([str(docs.ASYNCAPI_YAML)]) == 0


def test_every_registered_topic_is_a_channel_with_its_qos_and_retain(
    committed: dict[str, Any],
) -> None:
    ops = committed["operations"]
    for t in topics.all_topics():
        cid = asyncapi.channel_id(t)
        channel = committed["channels"][cid]
        assert channel["address"] == f"dovecote/{t.pattern}"
        assert sorted(channel.get("parameters", {})) == sorted(t.params)
        [op] = [op for op in ops.values() if op["channel"]["$ref"] == f"#/channels/{cid}"]
        assert op["action"] == "send"
        assert op["bindings"]["mqtt"]["qos"] == t.qos
        assert op["bindings"]["mqtt"]["retain"] is t.retain
        message = asyncapi.resolve(committed, op["messages"][0]["$ref"])
        assert asyncapi.resolve(committed, message["$ref"])["payload"] == {
            "$ref": f"#/components/schemas/{t.payload.__name__}"
        }
    server = committed["servers"]["development"]["bindings"]["mqtt"]
    assert server["cleanSession"] is False
    assert server["lastWill"]["topic"] == "dovecote/services/{service}/{instance}"


def test_payload_schemas_are_the_published_json_schemas(committed: dict[str, Any]) -> None:
    """The AsyncAPI components and docs/schemas/*.json come from the same types."""
    components = committed["components"]["schemas"]
    for t in topics.all_topics():
        alone = json.loads(
            json.dumps(act.json_schema(t.payload)).replace("#/$defs/", "#/components/schemas/")
        )
        for name, schema in alone["$defs"].items():
            assert components[name] == schema, name


def test_a_parameter_without_a_parameters_entry_fails(
    committed: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = copy.deepcopy(committed)
    del doc["channels"]["deadletterService"]["parameters"]
    path = planted(tmp_path, doc, "missing-parameter.yaml")
    assert asyncapi.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert (
        "channel deadletterService: address 'dovecote/deadletter/{service}' uses {service} "
        "but `parameters` has no 'service' entry"
    ) in err


@pytest.mark.parametrize("address", ["dovecote/events/+/started", "dovecote/events/#"])
def test_a_wildcard_in_a_channel_address_fails(
    committed: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], address: str
) -> None:
    doc = copy.deepcopy(committed)
    doc["channels"]["eventsBuildStarted"]["address"] = address
    path = planted(tmp_path, doc, "wildcard.yaml")
    assert asyncapi.main([str(path)]) == 1
    err = capsys.readouterr().err
    wildcard = "+" if "+" in address else "#"
    assert f"address {address!r} contains the MQTT wildcard {wildcard!r}" in err
    assert "not a subscription filter" in err


def test_other_structural_mistakes_are_caught(committed: dict[str, Any]) -> None:
    doc = copy.deepcopy(committed)
    op = doc["operations"]["sendEventsBuildStarted"]
    op["bindings"]["mqtt"]["qos"] = 3
    op["messages"] = [{"$ref": "#/channels/eventsBuildStarted/messages/Nope"}]
    doc["channels"]["stateBuild"]["parameters"] = {"x": {}}
    del doc["servers"]["development"]["bindings"]["mqtt"]["lastWill"]
    problems = asyncapi.check(doc)
    assert "operation sendEventsBuildStarted: mqtt qos must be 0, 1 or 2, not 3" in problems
    assert any(
        "$ref '#/channels/eventsBuildStarted/messages/Nope' points at nothing" in p
        for p in problems
    )
    assert (
        "channel stateBuild: parameter 'x' does not appear in address 'dovecote/state/build'"
        in problems
    )
    assert "server development: the mqtt binding has no lastWill" in problems


def test_the_docs_generator_refuses_to_write_an_invalid_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = asyncapi.document

    def broken(root: str | None = None) -> dict[str, Any]:
        doc = real(root)
        doc["channels"]["eventsBuildStarted"]["address"] = "dovecote/events/+/started"
        return doc

    monkeypatch.setattr(asyncapi, "document", broken)
    before = docs.ASYNCAPI_YAML.read_bytes()
    assert docs.main([]) == 1
    assert "contains the MQTT wildcard '+'" in capsys.readouterr().err
    assert docs.ASYNCAPI_YAML.read_bytes() == before


def official_parser(path: Path) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail(f"the official @asyncapi/parser is not installed: run {INSTALL} (needs node)")
    r = subprocess.run(
        [node, str(PARSER_DIR / "validate.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.stdout, r.stderr
    verdict: dict[str, Any] = json.loads(r.stdout)
    return verdict


@pytest.mark.npm
def test_the_official_asyncapi_parser_accepts_the_document() -> None:
    verdict = official_parser(docs.ASYNCAPI_YAML)
    worse = [d for d in verdict["diagnostics"] if d["severity"] in ("Error", "Warning")]
    assert verdict["valid"] and worse == [], verdict
