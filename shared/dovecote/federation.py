"""A federation, named once: its services and the contract modules that declare its topics.

The application writes a manifest (``services/federation.py``) holding one ``Federation``.
Tools that need every service or the whole topic registry (the docs, ACL and units
generators, ``dovecote run``, ``tail``, ``publish``, ``logins``) load that manifest from
configuration (``dovecote.tools.manifest``); the library never names the application's
modules. Importing the manifest is what fills the registry: each contract module registers
the topics it declares when imported, and the manifest imports them all.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from dovecote.errors import DovecoteError
from dovecote.service import Service
from dovecote.topics import Topic


class FederationError(DovecoteError, ValueError):
    """The manifest is wrong: two services share a name, or one is named twice."""


@dataclass(frozen=True)
class Federation:
    """Every service of the application, and every module that declares its topics."""

    services: tuple[type[Service], ...]
    contracts: tuple[ModuleType, ...]
    # What a person's own device login may read (``dovecote logins person``): their
    # notifications, say. Topics with a ``{user}`` parameter, filled with that person.
    person_reads: tuple[Topic, ...] = ()
    by_name: dict[str, type[Service]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, type[Service]] = {}
        for cls in self.services:
            if cls.name in by_name:
                raise FederationError(f"two services are named {cls.name!r}")
            by_name[cls.name] = cls
        for t in self.person_reads:
            if t.params != ("user",):
                raise FederationError(f"a person reads {t.pattern!r}: it needs one {{user}}")
        object.__setattr__(self, "by_name", by_name)

    def names(self) -> list[str]:
        return sorted(self.by_name)

    def __iter__(self) -> Iterator[type[Service]]:
        return iter(self.by_name[n] for n in self.names())

    def module(self, name: str) -> str:
        """The package a service runs as: ``python -m <module>`` (its class's package)."""
        return self.by_name[name].__module__.rpartition(".")[0]

    def folder(self, name: str) -> Path:
        """Where a service's code is (its ``admin.py``, if it has operator commands)."""
        return Path(inspect.getfile(self.by_name[name])).parent
