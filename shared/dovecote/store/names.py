"""Schema names for stores kept once per service (``record_points``, ``redelivery_points``).

A PostgreSQL schema name here is lower case letters, digits and underscores, at most 63
characters; a service's name may hold other characters (``points-next``). The mapping is
one to one: letters and digits stay, ``_`` becomes ``__`` and any other character ``_``
and its UTF-8 bytes in hex (``-`` is ``_2d``), so no two names meet. A name that would be
too long is cut and ends in a hash of the whole name instead: those are exactly 63
characters, the others at most 52, so a cut name never meets an uncut one either.
"""

from __future__ import annotations

import hashlib
import re

LONGEST = 63  # PostgreSQL's identifiers
UNCUT = 52  # uncut names stay this short: cut ones are LONGEST, never the same
HASHED = 16  # hex digits of SHA-256 that end a cut name
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]*$")


def schema_for(prefix: str, service: str) -> str:
    """``prefix_`` and the service's name, escaped: a schema of its own for each service."""
    if not _PREFIX_RE.match(prefix):
        raise ValueError(f"a schema prefix is lower case letters and digits, got {prefix!r}")
    escaped = "".join(_escaped(c) for c in service)
    name = f"{prefix}_{escaped}"
    if len(name) <= UNCUT:
        return name
    digest = hashlib.sha256(service.encode()).hexdigest()[:HASHED]
    return f"{name[: LONGEST - HASHED - 1]}_{digest}"


def _escaped(char: str) -> str:
    if char.isascii() and (char.islower() or char.isdigit()):
        return char
    if char == "_":
        return "__"
    return "".join(f"_{b:02x}" for b in char.encode())
