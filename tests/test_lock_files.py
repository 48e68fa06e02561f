"""The lock files say what every install gets (Makefile: pip install --require-hashes): each
dependency pyproject.toml names is pinned there, at a version its range allows, with hashes.
A range edited without `make upgrade` fails here rather than on someone's fresh clone."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dovecote.project import PROJECT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)")


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for every pin of a pip-compile lock file."""
    found: dict[str, tuple[str, int]] = {}
    name = ""
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            found[name] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = found[name]
            found[name] = (version, hashes + 1)
    return found


def declared(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    if extra:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


@pytest.mark.parametrize(("lock", "extra"), [("run.txt", None), ("dev.txt", "dev")])
def test_every_declared_dependency_is_pinned_in_range_with_hashes(
    lock: str, extra: str | None
) -> None:
    locked = pins(PROJECT / "requirements" / lock)
    problems = []
    for requirement in declared(extra):
        name = canonicalize_name(requirement.name)
        if name not in locked:
            problems.append(f"{name} is not in requirements/{lock}")
            continue
        version = locked[name][0]
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{name}=={version} is outside {requirement.specifier}")
    problems += [f"{name} has no hash" for name, (_, hashes) in locked.items() if hashes == 0]
    assert problems == [], "run `make upgrade` and commit requirements/: " + "; ".join(problems)


def test_the_run_lock_is_the_dev_lock_without_the_tools() -> None:
    """make run and make test install the same versions of what both need."""
    run, dev = (
        pins(PROJECT / "requirements" / "run.txt"),
        pins(PROJECT / "requirements" / "dev.txt"),
    )
    differ = {
        n: (v, dev.get(n, ("missing", 0))[0])
        for n, (v, _) in run.items()
        if dev.get(n, ("", 0))[0] != v
    }
    assert differ == {}
