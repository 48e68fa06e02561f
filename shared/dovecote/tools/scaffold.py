"""``dovecote new-service NAME``: a new service folder from the template in the repo.

The template (``shared/dovecote/tools/templates/service/``) is a working service: one
handler that reacts to a successful build with a Note on a topic of its own, one setting,
its ``__main__``, its own topics module and tests (on the in-memory bus, and as a real
process on a private broker). Then everything that follows from a new service:

- its setting is listed in ``deploy/dovecote.env.example`` (a test fails on a variable
  read and not listed there);
- the contract (``docs/``), the broker permissions (``deploy/mosquitto/acl``,
  ``deploy/rabbitmq/permissions.sh``) and its systemd unit
  (``deploy/systemd/dovecote-<name>@.service``) are regenerated, as ``make docs`` does.

- it is added to the federation: its contract to ``services/contracts.py``, its class to
  the manifest, ``services/federation.py`` (the module ``[tool.dovecote] federation``
  names), so it is part of ``dovecote run``, the docs and the grants at once.
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
from dovecote.tools import manifest

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "service"
ENV_EXAMPLE = PROJECT / "deploy" / "dovecote.env.example"
# The template's one setting, as deploy/dovecote.env.example lists it.
ENV_SECTION = Template(
    """# --- ${name} ${rule}
# What ${name} signs its notes with (services/${name}/service.py).
${NAME}_SIGNATURE=${name}

"""
)
ENV_BEFORE = "# --- tests only"  # service sections go above the tests' own variables
# A topic level (topics.check_id) that is also a Python package name (python -m services.X).
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class ScaffoldError(DovecoteError, ValueError):
    """The name or the place is not fit for a new service; ``str()`` says why."""


def check_name(name: str, services: Path | None = None) -> str:
    """``name`` if it is fit for a new service in ``services`` (the manifest's package)."""
    services = services or PROJECT.joinpath(*manifest.package().split("."))
    if not _NAME_RE.match(name) or name.endswith("_") or "__" in name:
        raise ScaffoldError(
            f"{name!r} is not a valid service name: use 1-32 of a-z 0-9 _, starting with a "
            "letter (it is a topic level and a Python package: no capitals, '-', '.', '/')"
        )
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword: `python -m services.{name}` fails")
    if (services / name).exists():
        raise ScaffoldError(f"{services.name}/{name} already exists; pick another name")
    return name


def class_name(name: str) -> str:
    """``image_tagger`` -> ``ImageTagger``."""
    return "".join(part.capitalize() for part in name.split("_"))


def render(name: str, package: str | None = None) -> dict[str, str]:
    """File name -> content for service ``name`` of ``package`` (the manifest's), from the
    template."""
    package = package or manifest.package()
    values = {"name": name, "Class": class_name(name), "NAME": name.upper(), "package": package}
    files = {}
    for src in sorted(TEMPLATE_DIR.glob("*.tmpl")):
        target = src.name.removesuffix(".tmpl")
        if target == "test_service.py":
            target = f"test_{name}.py"
        files[target] = Template(src.read_text()).substitute(values)
    return files


def list_settings(name: str, example: Path = ENV_EXAMPLE) -> None:
    """Add the new service's section to the env example, above the tests' own variables."""
    rule = "-" * max(3, 83 - len(name))  # 90 wide, as the other sections
    section = ENV_SECTION.substitute(name=name, NAME=name.upper(), rule=rule)
    text = example.read_text()
    at = text.find(ENV_BEFORE)
    example.write_text(text + "\n" + section if at < 0 else text[:at] + section + text[at:])


def enlist(text: str, package: str, import_line: str, opening: str, entry: str) -> str:
    """``text`` (a manifest module) with ``import_line`` among its imports of ``package``
    and ``entry`` in the tuple that opens with the line ``opening``, each where sorting
    puts it (as ruff's isort and the tuple's own order have them)."""
    lines = text.split("\n")
    ours = [i for i, line in enumerate(lines) if line.startswith(f"from {package}.")]
    if opening not in lines or not ours:
        raise ScaffoldError(f"no {opening.strip()!r} or imports of {package} to add to")
    indent = entry[: len(entry) - len(entry.lstrip())]
    first = end = lines.index(opening) + 1
    while lines[end].startswith(indent):
        end += 1
    lines[first:end] = sorted([*lines[first:end], entry])
    module = import_line.split()[1]
    place = next((i for i in ours if lines[i].split()[1] > module), ours[-1] + 1)
    lines.insert(place, import_line)
    return "\n".join(lines)


def manifest_files(project: Path, ref: str) -> tuple[Path, Path]:
    """The manifest module's file and, beside it, the contracts' (``contracts.py``)."""
    module = ref.partition(":")[0]
    path = project.joinpath(*module.split(".")).with_suffix(".py")
    return path, path.parent / "contracts.py"


def new_service(name: str, project: Path = PROJECT, ref: str | None = None) -> Path:
    """Write ``<package>/<name>/`` and list it in the federation; return the folder. All or
    nothing: a failure leaves no folder and the manifest as it was."""
    ref = ref or manifest.reference(project)
    package = manifest.package(ref)
    check_name(name, project.joinpath(*package.split(".")))
    if not (project / "pyproject.toml").exists():
        raise ScaffoldError(f"{project} is not a Dovecote checkout (no pyproject.toml)")
    federation_py, contracts_py = manifest_files(project, ref)
    cls = class_name(name)
    edits = {
        contracts_py: enlist(
            contracts_py.read_text(),
            package,
            f"from {package}.{name} import topics as {name}",
            "CONTRACTS = (",
            f"    {name},",
        ),
        federation_py: enlist(
            federation_py.read_text(),
            package,
            f"from {package}.{name}.service import {cls}",
            "    services=(",
            f"        {cls},",
        ),
    }
    folder = project.joinpath(*package.split("."), name)
    staging = folder.with_name(f".{name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for file, text in render(name, package).items():
            (staging / file).write_text(text)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for path, text in edits.items():
        path.write_text(text)
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
    list_settings(args.name)
    print(f"listed {args.name.upper()}_SIGNATURE in {ENV_EXAMPLE.relative_to(PROJECT)}")
    lists = manifest_files(PROJECT, manifest.reference(PROJECT))
    contracts, federation = (p.relative_to(PROJECT) for p in reversed(lists))
    print(f"listed {args.name} in {contracts} and {federation}")
    # Its topics.py declares a topic, and it is a new broker user and a new unit: what is
    # generated from the services changes with it (what `make docs` does).
    importlib.invalidate_caches()
    try:
        from dovecote.tools import acl, docs, units  # the docs need the dev tools (PyYAML)
    except ImportError as exc:
        print(f"docs, ACLs and units not regenerated ({exc}): run `make docs`", file=sys.stderr)
    else:
        for generator in (docs, acl, units):
            if generator.main([]) != 0:
                return 1
    name = args.name
    print(
        f"\nservices/{name} is a working service, already part of `dovecote run`. Next:\n"
        f"  make check                              # its in-memory test, in seconds\n"
        f"  .venv/bin/pytest services/{name}        # and as a real process on real brokers\n"
        f"  dovecote run builder {name} gateway     # run it with the others\n"
        f"  then make it yours: services/{name}/service.py and topics.py "
        "(see docs/adding-a-service.md)"
    )
    return 0
