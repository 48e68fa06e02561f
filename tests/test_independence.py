"""The import contract that makes "one new folder" true: services never import each other,
``shared/`` never imports a service, and paho is imported only in ``shared/dovecote/mqtt/``."""

from __future__ import annotations

import ast
from pathlib import Path

from dovecote.project import PROJECT

MQTT = PROJECT / "shared" / "dovecote" / "mqtt"  # the package that puts paho on asyncio


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_services_never_import_each_other() -> None:
    crossings = []
    for path in sorted((PROJECT / "services").glob("*/**/*.py")):
        own = path.relative_to(PROJECT / "services").parts[0]
        for name in imports(path):
            parts = name.split(".")
            if parts[0] == "services" and len(parts) > 1 and parts[1] != own:
                crossings.append(f"{path.relative_to(PROJECT)} imports {name}")
    assert crossings == []


def test_shared_never_imports_a_service_and_only_mqtt_imports_paho() -> None:
    found = []
    for path in sorted((PROJECT / "shared").glob("**/*.py")):
        for name in imports(path):
            if name.split(".")[0] == "services":
                found.append(f"{path.relative_to(PROJECT)} imports {name}")
            if name.split(".")[0] == "paho" and path.parent != MQTT:
                found.append(f"{path.relative_to(PROJECT)} imports {name}")
    assert found == []
