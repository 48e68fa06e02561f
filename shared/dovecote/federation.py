"""A federation, named once: its services and the contract modules that declare its topics.

The application writes a manifest (``services/federation.py``) holding one ``Federation``.
Tools that need every service or the whole topic registry (the docs, ACL and units
generators, ``dovecote run``, ``tail``, ``publish``, ``logins``) load that manifest from
configuration (``dovecote.tools.manifest``); the library never names the application's
modules. Importing the manifest is what fills the registry: each contract module registers
the topics it declares when imported, and the manifest imports them all.

A service written in another language has no ``Service`` class: the manifest names it as a
``Participant``, with what it reads and the command that starts it. What it publishes is in
its contract module like everyone's, so the docs and the broker's grants cover it; its
systemd unit runs its command (``dovecote.tools.units``); ``dovecote run`` does not start it
(it is not ``python -m`` anything).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from dovecote.errors import DovecoteError
from dovecote.service import Service
from dovecote.topics import PRESENCE_QUERY, Topic, TopicError, check_id


class FederationError(DovecoteError, ValueError):
    """The manifest is wrong: two services share a name, or one is named twice."""


# A word of a participant's command or folder, written into a systemd unit as it is: no
# space, quote, ``$`` or ``%`` (systemd would split, expand or substitute it).
_UNIT_WORD = re.compile(r"[\w./:=@+,-]+")


@dataclass(frozen=True)
class Participant:
    """A service of the federation not written in Python (``examples/node-captioner``).

    A Python service's reads are its handlers' subscriptions; this one's are declared here,
    so that its login may subscribe to them and nothing else. It answers the presence query
    like every worker, so that query is always among its reads.
    """

    name: str
    reads: tuple[Topic, ...]
    source: str  # where its code is, from the project folder: its unit's working directory
    # What starts one worker, run in ``source``: ``("node", "captioner.mjs")``. A bare
    # program name is looked up on the unit's PATH (``dovecote.tools.units``).
    command: tuple[str, ...]

    def __post_init__(self) -> None:
        words = [self.source, *self.command]
        if not self.command or not all(_UNIT_WORD.fullmatch(w) for w in words):
            raise FederationError(
                f"participant {self.name!r}: its source and command are words of letters, "
                f"digits and ._/:=@+,- (got source={self.source!r}, command={self.command!r})"
            )
        if self.source.startswith("/") or ".." in self.source.split("/"):
            raise FederationError(f"participant {self.name!r}: source is a project folder")

    def filters(self, root: str) -> list[str]:
        """The MQTT filters its workers subscribe to, as ``Service.filters`` says a class's."""
        return sorted({*(t.filter(root) for t in self.reads), PRESENCE_QUERY.address(root)})


@dataclass(frozen=True)
class Federation:
    """Every service of the application, and every module that declares its topics."""

    services: tuple[type[Service], ...]
    contracts: tuple[ModuleType, ...]
    # What a person's own device login may read (``dovecote logins person``): their
    # notifications, say. Topics with a ``{user}`` parameter, filled with that person.
    person_reads: tuple[Topic, ...] = ()
    # Services in other languages: in the docs and the broker's logins, not run from here.
    participants: tuple[Participant, ...] = ()
    by_name: dict[str, type[Service]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, type[Service]] = {}
        for cls in self.services:
            if cls.name in by_name:
                raise FederationError(f"two services are named {cls.name!r}")
            by_name[cls.name] = cls
        others: set[str] = set()
        for p in self.participants:
            try:
                check_id(p.name, "participant")
            except TopicError as exc:
                raise FederationError(str(exc)) from None
            if p.name in by_name or p.name in others:
                raise FederationError(f"two services are named {p.name!r}")
            others.add(p.name)
        for t in self.person_reads:
            if t.params != ("user",):
                raise FederationError(f"a person reads {t.pattern!r}: it needs one {{user}}")
        object.__setattr__(self, "by_name", by_name)

    def names(self) -> list[str]:
        """The Python services (what ``dovecote run`` starts)."""
        return sorted(self.by_name)

    def logins(self) -> list[str]:
        """Every service that connects to the broker: the Python ones and the participants."""
        return sorted([*self.by_name, *(p.name for p in self.participants)])

    def participant(self, name: str) -> Participant | None:
        return next((p for p in self.participants if p.name == name), None)

    def __iter__(self) -> Iterator[type[Service]]:
        return iter(self.by_name[n] for n in self.names())

    def module(self, name: str) -> str:
        """The package a service runs as: ``python -m <module>`` (its class's package)."""
        return self.by_name[name].__module__.rpartition(".")[0]

    def folder(self, name: str) -> Path:
        """Where a service's code is (its ``admin.py``, if it has operator commands)."""
        return Path(inspect.getfile(self.by_name[name])).parent
