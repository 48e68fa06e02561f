"""Which federation the tools work on: the application's manifest, named by configuration.

Like uvicorn's ``module:app``: ``DOVECOTE_FEDERATION`` if set, else ``federation`` under
``[tool.dovecote]`` in the project's ``pyproject.toml``, names a ``Federation``
(``dovecote.federation``), e.g. ``services.federation:FEDERATION``. The project folder
(``dovecote.project``) goes on ``sys.path`` first: the application runs from there and is
not installed. This is the one place the library imports a module by name or edits
``sys.path`` (tests/test_independence.py holds it to that); the runtime never does.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import tomllib
from pathlib import Path

from dovecote.federation import Federation, FederationError
from dovecote.project import PROJECT

ENV = "DOVECOTE_FEDERATION"


def reference(project: Path = PROJECT, env: dict[str, str] | None = None) -> str:
    """The configured ``module:attribute`` of the manifest."""
    chosen = (os.environ if env is None else env).get(ENV, "").strip()
    if chosen:
        return chosen
    pyproject = project / "pyproject.toml"
    if pyproject.is_file():
        with pyproject.open("rb") as f:
            named = tomllib.load(f).get("tool", {}).get("dovecote", {}).get("federation", "")
        if named:
            return str(named)
    raise FederationError(
        f"which federation? set {ENV}=<module>:<attribute> or `federation` under "
        f"[tool.dovecote] in {pyproject}"
    )


@functools.cache
def load(ref: str | None = None) -> Federation:
    """The manifest's ``Federation``, imported once (which registers all its topics)."""
    ref = ref or reference()
    module_name, _, attribute = ref.partition(":")
    if str(PROJECT) not in sys.path:
        sys.path.insert(0, str(PROJECT))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not exc.name or not f"{module_name}.".startswith(f"{exc.name}."):
            raise  # the manifest is there; something it imports is not
        raise FederationError(f"no module {module_name} (from {ref}) in {PROJECT}") from None
    found = getattr(module, attribute or "FEDERATION", None)
    if not isinstance(found, Federation):
        raise FederationError(f"{ref} is not a dovecote.federation.Federation")
    return found


def package(ref: str | None = None) -> str:
    """The package that holds the manifest, and the services beside it (``services``)."""
    return (ref or reference()).partition(":")[0].rpartition(".")[0]
