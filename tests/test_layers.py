"""The library's layers, read from the source (AST): every import, a function's and a
``TYPE_CHECKING`` one included, and ``import_module``/``__import__`` of a literal name.

- the runtime (``dovecote.*`` outside ``dovecote.tools``) imports neither the tools nor
  test support (``dovecote_testing``), nor pytest;
- the tools import no test support, nor pytest (the test cluster's controller is test
  support itself: ``python -m dovecote_testing.cluster``);
- a service's own modules (not its ``test_*.py`` nor a ``conftest.py``) import no test
  support.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]  # this checkout, whatever DOVECOTE_PROJECT says
SHARED = PROJECT / "shared"
TESTING = "dovecote_testing"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in ``source``, relative ones made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # `from dovecote import testing` names a module too
                yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else None
            name = node.func.id if isinstance(node.func, ast.Name) else name
            first = node.args[0]
            if (
                name in {"import_module", "__import__"}
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield node.lineno, first.value


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def modules(folder: Path, root: Path) -> Iterator[tuple[Path, str]]:
    for path in sorted(folder.rglob("*.py")):
        yield path, module_name(path, root)


def is_test(path: Path) -> bool:
    """A service's own tests (``test_*.py``, a ``conftest.py``) may use test support."""
    return path.name.startswith("test_") or path.name == "conftest.py"


def breaches(
    folder: Path, root: Path, forbidden: tuple[str, ...], skip: tuple[str, ...] = ()
) -> list[str]:
    found = []
    for path, module in modules(folder, root):
        if any(within(module, s) for s in skip) or is_test(path):
            continue
        is_package = path.name == "__init__.py"
        for line, name in imported(path.read_text(), module, is_package):
            if any(within(name, f) for f in forbidden):
                found.append(f"{path.relative_to(PROJECT)}:{line} imports {name}")
    return found


def test_the_runtime_imports_neither_the_tools_nor_test_support() -> None:
    forbidden = ("dovecote.tools", TESTING, "pytest", "_pytest")
    found = breaches(SHARED / "dovecote", SHARED, forbidden, skip=("dovecote.tools",))
    assert not found, "\n".join(found)


def test_the_tools_import_no_test_support() -> None:
    found = breaches(SHARED / "dovecote" / "tools", SHARED, (TESTING, "pytest", "_pytest"))
    assert not found, "\n".join(found)


def test_a_service_imports_test_support_only_in_its_tests() -> None:
    found = breaches(PROJECT / "services", PROJECT, (TESTING,))
    assert not found, "\n".join(found)


def test_test_support_is_its_own_package_beside_the_library() -> None:
    assert (SHARED / TESTING / "plugin.py").is_file()
    assert not list((SHARED / "dovecote" / "testing").glob("*.py"))  # a stale __pycache__ may stay


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("def f():\n    import dovecote_testing.memory\n", "dovecote.x", "dovecote_testing.memory"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from dovecote.tools import tail\n",
            "dovecote.x",
            "dovecote.tools.tail",
        ),
        ("from ..tools import broker\n", "dovecote.sub.x", "dovecote.tools.broker"),
        ("from .. import tools\n", "dovecote.sub.x", "dovecote.tools"),
        ("import importlib\nimportlib.import_module('dovecote_testing')\n", "m", TESTING),
        ("__import__('pytest')\n", "m", "pytest"),
    ],
)
def test_the_check_sees_every_kind_of_import(source: str, module: str, expected: str) -> None:
    assert expected in {name for _, name in imported(source, module)}


def test_a_relative_import_in_a_package_init_is_read_from_that_package() -> None:
    source = "from .probe import Probe\n"
    assert "dovecote_testing.probe" in {n for _, n in imported(source, TESTING, is_package=True)}


MODULE_LINES, CLASS_LINES = 400, 250  # the runtime stays a set of small parts


def test_no_runtime_module_or_class_grows_past_its_size() -> None:
    """The runtime (``dovecote`` without its tools) is read on the message path: no module
    over 400 lines, no class over 250; past that, a part wants to be split out."""
    runtime = [p for p in (SHARED / "dovecote").rglob("*.py") if "tools" not in p.parts]
    too_big = []
    for path in runtime:
        source = path.read_text()
        where = path.relative_to(PROJECT)
        if len(source.splitlines()) > MODULE_LINES:
            too_big.append(f"{where}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > CLASS_LINES:
                    too_big.append(f"{where}: class {node.name}, {lines} lines")
    assert runtime and too_big == []
