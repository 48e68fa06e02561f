"""``dovecote new-service``: in a temporary copy of the repo, scaffold a service, then run its
own test (green), lint it, run it under the supervisor, and show nothing else changed."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dovecote.project import PROJECT
from dovecote.tools import scaffold
from dovecote_testing.plugin import Probe
from tests import mypy_cache

VENV_BIN = Path(sys.executable).parent


def repo_copy(dest: Path) -> Path:
    """Every file git knows or would add (tracked + untracked, not ignored), as it is now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = PROJECT / rel
        if src.is_file():  # tracked but deleted in the worktree: not part of "now"
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


async def run(args: list[str], cwd: Path, env: dict[str, str], expect: int = 0) -> tuple[str, str]:
    """Run a command to its end without blocking the event loop (the probe lives on it)."""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    stdout, stderr = out.decode(), err.decode()
    assert proc.returncode == expect, f"{args} exited {proc.returncode}:\n{stdout}\n{stderr}"
    return stdout, stderr


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Tweeter", "not a valid service name"),
        ("my-svc", "not a valid service name"),
        ("1st", "not a valid service name"),
        ("a/b", "not a valid service name"),
        ("a.b", "not a valid service name"),
        ("", "not a valid service name"),
        ("x" * 33, "not a valid service name"),
        ("odd_", "not a valid service name"),
        ("class", "is a Python keyword"),
        ("builder", "services/builder already exists"),
        ("gateway", "services/gateway already exists"),
    ],
)
def test_bad_or_taken_names_are_refused(name: str, why: str) -> None:
    with pytest.raises(scaffold.ScaffoldError, match=why):
        scaffold.check_name(name)


def test_the_template_renders_every_file_with_the_names_filled_in() -> None:
    files = scaffold.render("image_tagger")
    assert sorted(files) == [
        "__init__.py",
        "__main__.py",
        "service.py",
        "test_image_tagger.py",
        "topics.py",
    ]
    assert "class ImageTagger(Service):" in files["service.py"]
    assert '"events/image_tagger/noted"' in files["topics.py"]
    assert all("$" not in text for text in files.values())


def test_a_new_service_is_listed_in_the_federation_where_sorting_puts_it(tmp_path: Path) -> None:
    """Its contract in contracts.py and its class in the manifest, as ruff would order them."""
    (tmp_path / "services").mkdir()
    for rel in ("pyproject.toml", "services/contracts.py", "services/federation.py"):
        shutil.copy2(PROJECT / rel, tmp_path / rel)
    folder = scaffold.new_service("hello", tmp_path, "services.federation:FEDERATION")
    assert folder == tmp_path / "services" / "hello"
    contracts = (tmp_path / "services/contracts.py").read_text()
    federation = (tmp_path / "services/federation.py").read_text()
    assert "from services.hello import topics as hello\n" in contracts
    assert "    gateway,\n    hello,\n    notifier,\n" in contracts
    assert "from services.hello.service import Hello\n" in federation
    assert "        Gateway,\n        Hello,\n        Notifier,\n" in federation
    lint = [str(VENV_BIN / "ruff"), "check", "--select", "I,F"]
    lint += [
        "--config",
        "lint.isort.known-first-party=['dovecote', 'dovecote_testing', 'services']",
    ]
    ruff = subprocess.run([*lint, "services"], cwd=tmp_path, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout
    with pytest.raises(scaffold.ScaffoldError, match="services/hello already exists"):
        scaffold.new_service("hello", tmp_path, "services.federation:FEDERATION")


@pytest.mark.slow
@pytest.mark.brokers("mosquitto")  # it proves the scaffold; the broker is not the point
async def test_a_scaffolded_service_passes_its_own_test_and_joins_the_federation(
    tmp_path: Path, service_env: dict[str, str], probe: Probe
) -> None:
    repo = repo_copy(tmp_path / "repo")
    env = {**service_env, "PYTHONPATH": str(repo)}  # the copy's code, not the worktree's
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    await run([*git, "init", "-q"], repo, env)
    await run([*git, "add", "-A"], repo, env)
    await run([*git, "commit", "-qm", "before"], repo, env)

    cli = [sys.executable, "-m", "dovecote.tools.cli"]
    out, _ = await run([*cli, "new-service", "hello"], repo, env)
    assert "created services/hello/service.py" in out and "wrote docs/asyncapi.yaml" in out
    assert "listed HELLO_SIGNATURE in deploy/dovecote.env.example" in out
    assert "listed hello in services/contracts.py and services/federation.py" in out
    assert "wrote deploy/mosquitto/roles.json" in out
    assert "wrote deploy/rabbitmq/permissions.sh" in out
    assert "wrote deploy/systemd/dovecote-hello@.service" in out

    # One new folder, listed in the federation (its contract, its class); the rest of the
    # change is what follows from it: the contract, the broker users, its unit, its
    # setting listed. No service edited.
    changed, _ = await run(["git", "status", "--porcelain", "--untracked-files=all"], repo, env)
    assert sorted(line[3:] for line in changed.splitlines()) == [
        "deploy/dovecote.env.example",
        "deploy/mosquitto/roles.json",
        "deploy/rabbitmq/permissions.sh",
        "deploy/systemd/dovecote-hello@.service",
        "docs/asyncapi.yaml",
        "docs/schemas/HelloNoteCreated.json",
        "docs/schemas/HelloState.json",
        "docs/topics.md",
        "services/contracts.py",
        "services/federation.py",
        "services/hello/__init__.py",
        "services/hello/__main__.py",
        "services/hello/service.py",
        "services/hello/test_hello.py",
        "services/hello/topics.py",
    ]
    diff, _ = await run(["git", "diff", "deploy/dovecote.env.example"], repo, env)
    assert "+HELLO_SIGNATURE=hello" in diff
    assert '"rolename": "dovecote-hello"' in (repo / "deploy/mosquitto/roles.json").read_text()

    _, err = await run([*cli, "new-service", "hello"], repo, env, expect=2)
    assert "dovecote new-service: services/hello already exists" in err
    _, err = await run([*cli, "new-service", "Hello-World"], repo, env, expect=2)
    assert "'Hello-World' is not a valid service name" in err

    # The generated code meets the project's own bar, its own tests are green, and what the
    # project checks of every service holds for it: docs, ACLs, units, the env example.
    await run([str(VENV_BIN / "ruff"), "check", "services"], repo, env)
    await run([str(VENV_BIN / "ruff"), "format", "--check", "services"], repo, env)
    # The copy's modules as the lint run left them (copied with their times): only hello's
    # are checked from the start.
    mypy_cache.seeded(repo / ".mypy_cache")
    await run([str(VENV_BIN / "mypy"), "services/hello"], repo, env)
    # One broker is enough to prove the scaffolded test (the outer test picks which).
    pytest_cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v"]
    pytest_cmd += ["--broker=mosquitto"]
    checks = [
        "tests/test_docs.py::test_committed_docs_match_the_registry",
        "tests/test_deploy.py::test_the_committed_acls_match_the_registry",
        "tests/test_deploy.py::test_every_service_has_its_systemd_unit_and_systemd_accepts_each",
        "tests/test_deploy.py::test_the_env_example_lists_every_variable_the_code_reads",
    ]
    out, _ = await run([*pytest_cmd, "services/hello", *checks], repo, env)
    assert "test_hello.py::test_the_handler_notes_a_successful_build PASSED" in out
    assert "test_hello.py::test_a_successful_build_gets_a_note[mosquitto] PASSED" in out
    restart = "test_a_build_redelivered_after_a_restart_is_noted_once[mosquitto] PASSED"
    assert f"test_hello.py::{restart}" in out
    assert f"{len(checks) + 4} passed" in out, out
    await run([sys.executable, "-m", "dovecote.tools.asyncapi"], repo, env)
    # Its in-memory test is in the fast loop, the one on a broker is not.
    out, _ = await run([*pytest_cmd, "--no-broker", "services/hello"], repo, env)
    assert "2 passed, 2 deselected" in out, out

    # ... and those tests can fail: break the service, and they say what went wrong.
    service_py = repo / "services/hello/service.py"
    original = service_py.read_text()
    service_py.write_text(original.replace('f"{build.name} succeeded, noted', 'f"? noted'))
    out, _ = await run([*pytest_cmd, "services/hello"], repo, env, expect=1)
    assert "3 failed" in out and "Build #7 succeeded, noted by" in out, out
    service_py.write_text(original)

    # The manifest lists it: `dovecote run hello` starts it.
    sup = await asyncio.create_subprocess_exec(
        *cli, "run", "hello", cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        await probe.wait_online("hello", timeout=30)
    finally:
        sup.send_signal(signal.SIGINT)
        out_bytes, _ = await asyncio.wait_for(sup.communicate(), 30)
    text = out_bytes.decode()
    assert sup.returncode == 0, text
    assert "workers:        hello×1" in text
    await probe.wait_for("services/hello/1", lambda a: a["type"] == "Leave")
