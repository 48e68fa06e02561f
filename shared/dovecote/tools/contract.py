"""``dovecote contract``: is this version of the contract safe to deploy beside the last one?

``check`` compares the registry (every service's topics and payloads, as the AsyncAPI document
``make docs`` writes) with a baseline: by default the contract of the last release, kept in
``docs/contract/released.yaml`` and moved on purpose with ``release``; or any git ref's
``docs/asyncapi.yaml`` (``--against v0.1.0``), or a file. Every change is printed, compatible
or breaking (and for whom: ``dovecote.tools.compat``); the exit code is 1 when one breaks.
docs/contract.md has the rules and how to make a breaking change in two deploys.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from dovecote.project import PROJECT
from dovecote.tools import asyncapi, compat, manifest

RELEASED = PROJECT / "docs" / "contract" / "released.yaml"
ASYNCAPI_IN_GIT = "docs/asyncapi.yaml"


class BaselineError(Exception):
    """The baseline cannot be read; the message says which and why."""


def current() -> dict[str, Any]:
    manifest.load()
    return asyncapi.document()


def baseline(against: str) -> Any:
    """A file if ``against`` names one, else the AsyncAPI document of that git ref."""
    path = Path(against)
    if path.is_file():
        try:
            return yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise BaselineError(f"cannot read {path}: {exc}") from None
    shown = subprocess.run(
        ["git", "-C", str(PROJECT), "show", f"{against}:{ASYNCAPI_IN_GIT}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode != 0:
        raise BaselineError(
            f"{against!r} is neither a file nor a git ref with {ASYNCAPI_IN_GIT}: "
            f"{shown.stderr.strip()}"
        )
    return yaml.safe_load(shown.stdout)


def check(against: str, verbose: bool = True) -> int:
    try:
        old = baseline(against)
    except BaselineError as exc:
        print(f"dovecote contract check: {exc}", file=sys.stderr)
        return 2
    changes = compat.compare(old, current())
    breaking = [c for c in changes if c.breaking]
    if verbose or breaking:
        for change in changes:
            print(change.line())
    print(
        f"contract against {against}: {len(changes)} change(s), {len(breaking)} breaking"
        + (" — see docs/contract.md for making them in two deploys" if breaking else "")
    )
    return 1 if breaking else 0


def release(path: Path = RELEASED) -> int:
    """Make the registry as it is now the baseline that ``check`` compares with."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(asyncapi.render(current()))
    print(f"wrote {path}: `dovecote contract check` now compares with this contract")
    return 0


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("contract", help="is the contract compatible with the last release?")
    actions = p.add_subparsers(dest="action", required=True)
    c = actions.add_parser("check", help="every change since a baseline; exit 1 if one breaks")
    c.add_argument(
        "--against",
        default=str(RELEASED.relative_to(PROJECT))
        if RELEASED.is_relative_to(PROJECT)
        else str(RELEASED),
        metavar="FILE_OR_GIT_REF",
        help="an AsyncAPI file, or a git ref whose docs/asyncapi.yaml is the baseline "
        "(default: docs/contract/released.yaml, the last release's)",
    )
    c.add_argument("--quiet", action="store_true", help="print only breaking changes")
    c.set_defaults(func=lambda a: check(_in_project(a.against), verbose=not a.quiet))
    r = actions.add_parser("release", help="make the current contract the baseline")
    r.set_defaults(func=lambda a: release())


def _in_project(against: str) -> str:
    """A relative file name is the project's (make runs from there; so may a user)."""
    inside = PROJECT / against
    return str(inside) if not Path(against).is_file() and inside.is_file() else against


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dovecote", description=__doc__)
    add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["contract", *(argv if argv is not None else sys.argv[1:])])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
