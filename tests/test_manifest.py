"""The tools find the federation by configuration: ``DOVECOTE_FEDERATION``, else
``[tool.dovecote] federation`` in pyproject.toml; the manifest names every service once."""

from __future__ import annotations

from pathlib import Path

import pytest

from dovecote import project, topics
from dovecote.federation import Federation, FederationError, Participant
from dovecote.project import PROJECT
from dovecote.tools import manifest
from services.builder.service import Builder


def test_the_environment_names_the_manifest_before_pyproject(tmp_path: Path) -> None:
    assert manifest.reference(PROJECT, {}) == "services.federation:FEDERATION"
    assert manifest.reference(PROJECT, {manifest.ENV: "app.fed:F"}) == "app.fed:F"
    assert manifest.package("app.fed:F") == "app"
    with pytest.raises(FederationError, match=r"\[tool.dovecote\]"):
        manifest.reference(tmp_path, {})  # no pyproject.toml there


def test_the_configured_manifest_is_every_service_and_every_contracts_topic() -> None:
    federation = manifest.load()
    assert federation.names() == [
        "builder",
        "deadletters",
        "gateway",
        "notifier",
        "points",
        "resizer",
        "tweeter",
    ]
    assert federation.module("builder") == "services.builder"
    assert (federation.folder("gateway") / "admin.py").is_file()
    # Loading it registered every contract: each service publishes some registered topic.
    assert set(federation.names()) <= {t.publisher for t in topics.all_topics()}
    # A service in another language: named with what it reads, its contract registered too.
    captioner = federation.participant("captioner")
    assert captioner is not None and (PROJECT / captioner.source / "package.json").is_file()
    assert (PROJECT / captioner.source / captioner.command[-1]).is_file()  # what its unit runs
    assert captioner.filters("d") == ["d/events/image/created", "d/services/query"]
    assert "captioner" in {t.publisher for t in topics.all_topics()}
    assert "captioner" in federation.logins() and "captioner" not in federation.names()


def node(name: str) -> Participant:
    return Participant(name, (), "examples/x", ("node", "x.mjs"))


def test_a_wrong_manifest_is_refused() -> None:
    with pytest.raises(FederationError, match="no module"):
        manifest.load("services.nowhere:FEDERATION")
    with pytest.raises(FederationError, match="is not a dovecote"):
        manifest.load("services.contracts:CONTRACTS")
    with pytest.raises(FederationError, match="two services are named 'builder'"):
        Federation(services=(Builder, Builder), contracts=())
    for name in ("builder", "Bad Name"):  # a Python service's name, or not one topic level
        with pytest.raises(
            FederationError, match=repr(name) if name == "builder" else "not a valid"
        ):
            Federation(services=(Builder,), contracts=(), participants=(node(name),))
    # Written into its systemd unit as they are: a folder of the project, plain words.
    for source, command in (("x", ()), ("/srv/x", ("node",)), ("../x", ("node",))):
        with pytest.raises(FederationError, match="participant 'x'"):
            Participant("x", (), source, command)
    for word in ("a b.mjs", "$HOME", "100%", '"q"'):
        with pytest.raises(FederationError, match="participant 'x'"):
            Participant("x", (), "x", ("node", word))
    with pytest.raises(FederationError, match="needs one"):
        Federation(services=(), contracts=(), person_reads=(topics.PRESENCE,))


def test_the_project_is_the_nearest_folder_whose_pyproject_names_a_federation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.dovecote]\nfederation = "app.fed:F"\n')
    inner = tmp_path / "tools" / "deep"
    inner.mkdir(parents=True)
    (tmp_path / "tools" / "pyproject.toml").write_text('[project]\nname = "other"\n')
    monkeypatch.chdir(inner)
    assert project.find({}) == tmp_path.resolve()  # tools/ has a pyproject, not ours
    assert project.find({"DOVECOTE_PROJECT": str(inner)}) == inner.resolve()
