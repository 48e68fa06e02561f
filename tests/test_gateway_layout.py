"""The gateway's modules import one another without a circle, and import no tool or test
support: read from the source (AST), every import counted, those under ``TYPE_CHECKING``
and inside functions too, since a circle hidden there is still one to untangle."""

from __future__ import annotations

import ast
from pathlib import Path

from dovecote.project import PROJECT

GATEWAY = PROJECT / "services" / "gateway"
PACKAGE = "services.gateway"
FORBIDDEN = ("dovecote.tools", "dovecote_testing")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, name: str, modules: set[str]) -> set[str]:
    """Every module ``path`` (module ``name``) names in an import, wherever the import is
    (absolute names)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # ``from package import module`` imports that module.
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
    return found


def gateway_graph() -> dict[str, set[str]]:
    paths = sorted(GATEWAY.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported(p, module_name(p), modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles among ``graph``'s own modules: one path around each strongly
    connected group (Tarjan), a module importing itself included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node] & graph.keys()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle_through_a_type_only_import(tmp_path: Path) -> None:
    # The same reading as the gateway's, on a circle closed only under TYPE_CHECKING.
    (tmp_path / "a.py").write_text("from pkg import b\n")
    (tmp_path / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n"
    )
    (tmp_path / "c.py").write_text("import pkg.b\n")
    modules = {"pkg.a", "pkg.b", "pkg.c"}
    graph = {f"pkg.{p.stem}": imported(p, f"pkg.{p.stem}", modules) for p in tmp_path.glob("*.py")}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]
    assert cycles({"x": {"x"}, "y": {"x"}}) == [["x"]]


def test_no_gateway_module_is_part_of_an_import_circle() -> None:
    graph = gateway_graph()
    assert len(graph) > 40, sorted(graph)  # the whole gateway was read
    assert "services.gateway.context" in graph["services.gateway.web.app"]
    assert cycles(graph) == []


def test_no_gateway_module_imports_a_tool_or_test_support() -> None:
    wrong = {
        module: sorted(m for m in names if m.startswith(FORBIDDEN))
        for module, names in gateway_graph().items()
    }
    assert {module: names for module, names in wrong.items() if names} == {}


def test_gateway_modules_stay_short() -> None:
    long = {
        module_name(p): n
        for p in GATEWAY.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_templates_and_static_files_are_where_the_app_and_its_edge_look() -> None:
    from services.gateway.web import app, edge

    assert edge.HERE == app.HERE == GATEWAY
    assert (GATEWAY / "templates" / "base.html").is_file()
    assert (GATEWAY / "static" / "dashboard.js").is_file()
