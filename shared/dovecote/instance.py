"""Instance ids unique across machines without hand numbering, stable across restarts.

A worker's instance id is part of its MQTT client id (``<root>-<service>-<instance>``), so
it must be unique among every worker of its service on every machine (two workers with one
id take each other's session), and the same after a restart (the restarted worker gets its
session, and what was queued for it, back).

``DOVECOTE_INSTANCE=auto`` makes one: ``<machine>-<n>``, where ``<machine>`` is this machine's
name (``DOVECOTE_MACHINE``, else the host name) made a valid topic level, and ``<n>`` the
lowest number no live worker of the same service and root holds on this machine. A worker
holds its number with an exclusive ``flock`` on ``<DOVECOTE_DATA_DIR>/instances/<root>-
<service>-<machine>-<n>.lock`` for as long as its process lives; the kernel releases it when the
process dies, kill -9 included, so a worker started again after a crash takes the number
its predecessor held (the others still hold theirs). The supervisor (``dovecote run``) with
``DOVECOTE_INSTANCE=auto`` numbers its workers itself: ``<machine>-1`` .. ``<machine>-N``.

Containers get a new host name at each start: set ``DOVECOTE_MACHINE`` to something stable
there (the node's name), or sessions are not resumed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

from dovecote.errors import ConfigError

AUTO = "auto"
MACHINE_CHARS = 20  # room left in a 32-character instance id for "-<n>"
_held: list[int] = []  # lock files held for the life of the process


def machine_name(env: Mapping[str, str]) -> str:
    """This machine as one topic level: ``Web-1.eu.example.com`` -> ``web-1-eu-example-com``
    (a long name is cut and given a short hash of the whole, so two stay distinct)."""
    raw = env.get("DOVECOTE_MACHINE", "").strip() or socket.gethostname()
    name = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
    if not name:
        raise ConfigError(f"cannot make a machine name from {raw!r}: set DOVECOTE_MACHINE")
    if len(name) > MACHINE_CHARS:
        digest = hashlib.sha1(raw.encode()).hexdigest()[:6]
        name = f"{name[: MACHINE_CHARS - 7].rstrip('-')}-{digest}"
    return name


def claim(env: Mapping[str, str], root: str, service: str, folder: Path) -> str:
    """The lowest free ``<machine>-<n>`` on this machine, held until this process exits."""
    machine = machine_name(env)
    locks = folder / "instances"
    locks.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        fd = os.open(locks / f"{root}-{service}-{machine}-{n}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held.append(fd)
        return f"{machine}-{n}"
    raise ConfigError(f"DOVECOTE_INSTANCE=auto: 999 workers of {service} hold a number here")
