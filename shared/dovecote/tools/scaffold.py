"""``dovecote new-service NAME``: a new service folder from the template in the repo.

The template (``shared/dovecote/tools/templates/service/``) is a working service: one
handler that reacts to a successful build with a Note on a topic of its own, its
``__main__``, its own topics module and a test that runs it as a real process on a
private broker. The supervisor finds every ``services/*/__main__.py``, so the new service
is part of ``dovecote run`` at once.
"""

from __future__ import annotations

import argparse
import importlib
import keyword
import re
import shutil
import sys
from pathlib import Path
from string import Template

from dovecote.errors import DovecoteError
from dovecote.project import PROJECT

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "service"
# A topic level (topics.check_id) that is also a Python package name (python -m services.X).
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ScaffoldError(DovecoteError, ValueError):
    """The name or the place is not fit for a new service; ``str()`` says why."""


def check_name(name: str, project: Path = PROJECT) -> str:
    if not _NAME_RE.match(name) or name.endswith("_") or "__" in name:
        raise ScaffoldError(
            f"{name!r} is not a valid service name: use 1-32 of a-z 0-9 _, starting with a "
            "letter (it is a topic level and a Python package: no capitals, '-', '.', '/')"
        )
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword: `python -m services.{name}` fails")
    if (project / "services" / name).exists():
        raise ScaffoldError(f"services/{name} already exists; pick another name")
    return name


def class_name(name: str) -> str:
    """``image_tagger`` -> ``ImageTagger``."""
    return "".join(part.capitalize() for part in name.split("_"))


def render(name: str) -> dict[str, str]:
    """File name -> content for service ``name``, from the template."""
    values = {"name": name, "Class": class_name(name)}
    files = {}
    for src in sorted(TEMPLATE_DIR.glob("*.tmpl")):
        target = src.name.removesuffix(".tmpl")
        if target == "test_service.py":
            target = f"test_{name}.py"
        files[target] = Template(src.read_text()).substitute(values)
    return files


def new_service(name: str, project: Path = PROJECT) -> Path:
    """Write ``services/<name>/`` and return it. All or nothing: a failure leaves no folder."""
    check_name(name, project)
    if not (project / "pyproject.toml").exists():
        raise ScaffoldError(f"{project} is not a Dovecote checkout (no pyproject.toml)")
    folder = project / "services" / name
    staging = project / "services" / f".{name}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for file, text in render(name).items():
            (staging / file).write_text(text)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


# --- the command ---------------------------------------------------------------------------


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "new-service",
        help="scaffold services/NAME/ (handler, entry point, topics, test) from the template",
    )
    p.add_argument("name", metavar="NAME", help="lowercase: a-z 0-9 _ (e.g. tweeter)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    try:
        folder = new_service(args.name)
    except (ScaffoldError, OSError) as exc:
        print(f"dovecote new-service: {exc}", file=sys.stderr)
        return 2
    for path in sorted(folder.iterdir()):
        print(f"created {path.relative_to(PROJECT)}")
    # Its topics.py declares a topic: the published contract changes with it.
    importlib.invalidate_caches()
    try:
        from dovecote.tools import docs  # the docs generator needs the dev tools (PyYAML)
    except ImportError as exc:
        print(f"docs not regenerated ({exc}): run `make docs`", file=sys.stderr)
    else:
        if docs.main([]) != 0:
            return 1
    name = args.name
    print(
        f"\nservices/{name} is a working service, already part of `dovecote run`. Next:\n"
        f"  .venv/bin/pytest services/{name}        # its test: a real broker, a real process\n"
        f"  dovecote run builder {name} gateway     # run it with the others\n"
        f"  then make it yours: services/{name}/service.py and topics.py "
        "(see docs/adding-a-service.md)"
    )
    return 0
