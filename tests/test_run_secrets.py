"""The secrets `dovecote run` keeps across restarts (dovecote/tools/run_secrets.py)."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from dovecote.tools import run_secrets
from dovecote.tools.cli import secrets_line


def test_made_once_then_reused_from_a_0600_file(tmp_path: Path) -> None:
    first: dict[str, str] = {}
    made = run_secrets.settle(first, tmp_path)
    assert {made[name] for name in run_secrets.MAKERS} == {"new"}
    path = tmp_path / run_secrets.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {name: first[name] for name in run_secrets.MAKERS}
    second: dict[str, str] = {}
    reused = run_secrets.settle(second, tmp_path)
    assert second == first
    assert {reused[name] for name in run_secrets.MAKERS} == {"kept"}
    assert "reused DOVECOTE_SERVICE_TOKEN, DOVECOTE_SESSION_KEY" in secrets_line(reused)


def test_fresh_replaces_every_kept_secret(tmp_path: Path) -> None:
    first: dict[str, str] = {}
    run_secrets.settle(first, tmp_path)
    fresh: dict[str, str] = {}
    run_secrets.settle(fresh, tmp_path, fresh=True)
    assert all(fresh[name] != first[name] for name in run_secrets.MAKERS)
    later: dict[str, str] = {}
    run_secrets.settle(later, tmp_path)
    assert later == fresh  # the new ones are the kept ones now


def test_the_environment_wins_and_is_never_written(tmp_path: Path) -> None:
    env = {"DEMO_PASSWORD": "from-the-environment"}
    origins = run_secrets.settle(env, tmp_path)
    assert env["DEMO_PASSWORD"] == "from-the-environment"
    assert origins["DEMO_PASSWORD"] == "env"
    kept = json.loads((tmp_path / run_secrets.FILE_NAME).read_text())
    assert "DEMO_PASSWORD" not in kept and "from-the-environment" not in json.dumps(kept)
    assert "took DEMO_PASSWORD from the environment" in secrets_line(origins)
    everything = {name: f"set-{name}" for name in run_secrets.MAKERS}
    only_env = run_secrets.settle(everything, tmp_path / "other")
    assert not (tmp_path / "other" / run_secrets.FILE_NAME).exists()
    assert secrets_line(only_env).endswith("from the environment; none kept")


def test_a_file_others_can_read_is_refused_not_reused(tmp_path: Path) -> None:
    run_secrets.settle({}, tmp_path)
    path = tmp_path / run_secrets.FILE_NAME
    path.chmod(0o644)
    with pytest.raises(run_secrets.SecretsFileError, match=r"readable by others .*--fresh-secrets"):
        run_secrets.settle({}, tmp_path)
    env: dict[str, str] = {}
    run_secrets.settle(env, tmp_path, fresh=True)  # the way out it names
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ["{not json", '["a list"]', '{"DEMO_PASSWORD": 7}'])
def test_a_damaged_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / run_secrets.FILE_NAME
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(
        run_secrets.SecretsFileError, match=re.escape(str(path)) + ".*--fresh-secrets"
    ):
        run_secrets.settle({}, tmp_path)
    assert path.read_text() == content  # nothing lost until asked
