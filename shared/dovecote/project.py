"""Where the project is: the folder whose ``pyproject.toml`` names the federation.

The library (``dovecote``) is installed; the services are the application beside it and are
run from the project folder (``python -m services.<name>``), never installed. Tools and the
test plugin find that folder here: ``DOVECOTE_PROJECT`` if set, else the nearest folder at or
above the working directory whose ``pyproject.toml`` has a ``[tool.dovecote]`` table (its
manifest: ``dovecote.tools.manifest``), else the checkout this library was installed from
(an editable install).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path


def _is_project(folder: Path) -> bool:
    try:
        with (folder / "pyproject.toml").open("rb") as f:
            return "dovecote" in tomllib.load(f).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False


def find(env: dict[str, str] | None = None) -> Path:
    chosen = (os.environ if env is None else env).get("DOVECOTE_PROJECT", "").strip()
    if chosen:
        return Path(chosen).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if _is_project(folder):
            return folder
    checkout = Path(__file__).resolve().parents[2]  # shared/dovecote/project.py -> the repo
    return checkout if _is_project(checkout) else here


PROJECT = find()
