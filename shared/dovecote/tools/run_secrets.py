"""The secrets of a ``dovecote run``, kept across restarts.

A developer restarts the federation to see a change; a fresh session key signed everyone out
and a fresh demo password had to be read again each time. So the run keeps what it made in
one file under its data folder (``run-secrets.json``, mode 0600, written whole or not at all)
and reuses it; ``dovecote run --fresh-secrets`` makes new ones. A value set in the
environment always wins and is never written to the file.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

FILE_NAME = "run-secrets.json"


def _session_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()  # a Fernet key


# What each secret is, and how a new one is made.
MAKERS: dict[str, Callable[[], str]] = {
    # Services authenticate to each other's REST resources (the resizer storing thumbnails).
    "DOVECOTE_SERVICE_TOKEN": lambda: secrets.token_urlsafe(32),
    # The gateway encrypts session cookies with it: a new one signs everyone out.
    "DOVECOTE_SESSION_KEY": _session_key,
    # The demo people's password.
    "DEMO_PASSWORD": lambda: secrets.token_urlsafe(9),
    # What a scraper of /metrics presents.
    "METRICS_TOKEN": lambda: secrets.token_urlsafe(24),
}


class SecretsFileError(Exception):
    """The kept file cannot be read as it should be; the message says what to do."""


@dataclass(frozen=True)
class Origins:
    """Where each secret of this run came from: ``env``, ``kept`` or ``new``."""

    of: Mapping[str, str]
    path: Path

    def __getitem__(self, name: str) -> str:
        return self.of[name]


def settle(env: dict[str, str], folder: Path, fresh: bool = False) -> Origins:
    """Fill ``env`` with every secret of ``MAKERS``: from the environment, else the kept file,
    else new (and then kept). ``fresh`` forgets the kept ones first."""
    path = folder / FILE_NAME
    kept = {} if fresh else _read(path)
    origins: dict[str, str] = {}
    changed = fresh and path.exists()
    for name, make in MAKERS.items():
        if env.get(name, "").strip():
            origins[name] = "env"
            continue
        value = kept.get(name, "")
        if value:
            origins[name] = "kept"
        else:
            value = make()
            kept[name] = value
            origins[name] = "new"
            changed = True
        env[name] = value
    if changed:
        _write(path, kept)
    return Origins(origins, path)


def _read(path: Path) -> dict[str, str]:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Someone widened it: the secrets may have been read, so they are not reused.
        raise SecretsFileError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):o}): its secrets may "
            "have leaked; run with --fresh-secrets to replace them"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SecretsFileError(
            f"{path} cannot be read ({exc}); run with --fresh-secrets to make new ones"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise SecretsFileError(
            f"{path} is not an object of strings; run with --fresh-secrets to make new ones"
        )
    return {k: v for k, v in data.items() if k in MAKERS}


def _write(path: Path, values: Mapping[str, str]) -> None:
    """Atomically, created 0600: never a moment when the file is half written or wider."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask, or a leftover file of the same name
        os.write(fd, json.dumps(dict(values), indent=2, sort_keys=True).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
