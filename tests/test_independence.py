"""The import contract that makes "one new folder" true: a service imports no other service
but its contract (``services/<other>/topics.py``: the topics it publishes and their
payloads), ``shared/`` never imports a service, not even by name at run time, and paho is
imported only in ``shared/dovecote/mqtt/``.

Static imports are read from the source (AST); what a module pulls in at run time is seen
by importing it in a fresh interpreter and reading ``sys.modules``."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dovecote.project import PROJECT

CONTRACT = "topics"  # services/<name>/topics.py: what another service may import
# The federation's lists: contracts.py (every contract, which the gateway reads for its
# cards) may be imported by a service; federation.py (every service) by none.
CONTRACTS = "services.contracts"
# The one library module that imports the application by its configured name.
LOADER = PROJECT / "shared" / "dovecote" / "tools" / "manifest.py"
MQTT = PROJECT / "shared" / "dovecote" / "mqtt"  # the package that puts paho on asyncio


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # ``from services.gateway import topics`` imports the module services.gateway.topics
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def services() -> list[str]:
    return sorted(p.parent.name for p in (PROJECT / "services").glob("*/__init__.py"))


def foreign(name: str, own: str) -> bool:
    """Whether ``name`` is a module of another service than ``own``, other than its contract
    (a service package's ``__init__`` is loaded on the way to its contract, so it passes)."""
    parts = name.split(".")
    if parts[0] != "services" or len(parts) == 1 or name == CONTRACTS or parts[1] == own:
        return False
    if not (PROJECT / "services" / parts[1]).is_dir():
        return True  # services.federation, or any module beside the services
    return len(parts) > 2 and parts[2] != CONTRACT


def test_services_import_each_other_only_through_contracts() -> None:
    crossings = []
    for path in sorted((PROJECT / "services").glob("*/**/*.py")):
        own = path.relative_to(PROJECT / "services").parts[0]
        for name in imports(path):
            # ``from services.gateway import topics`` also yields services.gateway: a package
            if foreign(name, own) and name.count(".") > 1:
                crossings.append(f"{path.relative_to(PROJECT)} imports {name}")
            elif name == "services.federation":
                crossings.append(f"{path.relative_to(PROJECT)} imports the manifest")
    assert crossings == []


def loaded_by(modules: list[str]) -> list[str]:
    """Every ``services`` module that importing ``modules`` loads, in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'services')))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found: list[str] = json.loads(run.stdout.splitlines()[-1])
    return found


def modules_of(folder: Path, package: str) -> list[str]:
    out = []
    for path in sorted(folder.glob("**/*.py")):
        if path.name.startswith("test_") or path.name == "__main__.py":
            continue
        if not (path.parent / "__init__.py").exists():  # scripts, not modules: Alembic's
            continue  # environment and revisions, which Alembic runs by path
        parts = path.relative_to(folder).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        out.append(".".join((package, *parts)))
    return out


@pytest.mark.fresh_process  # a new interpreter per service: make test (the AST check: both)
@pytest.mark.parametrize("service", services())
def test_a_service_loads_no_other_service_but_its_contract(service: str) -> None:
    """Dynamic imports included: what its modules load when run, not only what they say."""
    modules = modules_of(PROJECT / "services" / service, f"services.{service}")
    assert [m for m in loaded_by(modules) if foreign(m, service)] == []


def test_the_library_loads_no_service() -> None:
    """Importing every module of ``dovecote`` (tools and test support too) loads nothing of
    the application: only calling the manifest loader does."""
    modules = modules_of(PROJECT / "shared" / "dovecote", "dovecote")
    assert len(modules) > 30
    assert loaded_by(modules) == []


# What imports a module by name, or runs one: importlib's and runpy's entry points.
DYNAMIC_IMPORTS = {"import_module", "__import__", "spec_from_file_location", "module_from_spec"}
DYNAMIC_IMPORTS |= {"exec_module", "run_module", "run_path"}


def dynamic_imports(path: Path) -> list[str]:
    """Where a module imports by name or edits ``sys.path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        where = f"{path.relative_to(PROJECT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Name) and node.id in DYNAMIC_IMPORTS:
            found.append(f"{where} {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in DYNAMIC_IMPORTS:
            found.append(f"{where} {node.attr}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "path"
            and ast.unparse(node) == "sys.path"
        ):
            found.append(f"{where} sys.path")
        elif isinstance(node, ast.ImportFrom) and node.module in ("runpy", "importlib.util"):
            found.append(f"{where} from {node.module} import ...")
    return found


def test_only_the_manifest_loader_imports_by_name_or_touches_sys_path() -> None:
    found = []
    for path in sorted((PROJECT / "shared").glob("**/*.py")):
        if path != LOADER:
            found += dynamic_imports(path)
    assert found == []
    # ... and the check sees what it must: the loader itself does both.
    assert {f.split()[-1] for f in dynamic_imports(LOADER)} == {"import_module", "sys.path"}


def test_shared_never_imports_a_service_and_only_mqtt_imports_paho() -> None:
    found = []
    for path in sorted((PROJECT / "shared").glob("**/*.py")):
        for name in imports(path):
            if name.split(".")[0] == "services":
                found.append(f"{path.relative_to(PROJECT)} imports {name}")
            if name.split(".")[0] == "paho" and path.parent != MQTT:
                found.append(f"{path.relative_to(PROJECT)} imports {name}")
    assert found == []
