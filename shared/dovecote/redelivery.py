"""Who may have a dead letter handled again: the service that parked it, once, unchanged.

A redelivery (``commands/<service>/redeliver``) makes a service run a payload as if it had
arrived on another topic, a topic whose publisher the sender of the command need not be:
the deadletters login may write every service's redeliver command, not the events in it.
So a service runs only what it parked itself, and each letter once:

- **signed**: the parking worker signs each letter with its service's redelivery key,
  HMAC-SHA256 over the service's name, the letter's id, the original topic and the whole
  original payload (``signature`` on the ``Flag``); a letter forged, or with its payload or
  topic altered, fails the check;
- **once**: the first redelivery of a letter is recorded before it runs; a second one,
  from another replay command, is refused. A copy of the same command (the broker's
  redelivery of it) is skipped as a repeat.

The record: a SQLite file beside the key (``<service>.redelivered.sqlite3``), or with
``DATABASE_URL`` the service's own schema there (``redelivery_<service>``,
``dovecote.store.names``), shared by its workers on every machine.

The key: ``DOVECOTE_REDELIVERY_KEY`` when set (32 characters or more). Else, with
``DATABASE_URL``, the one in the service's schema: the first worker to start makes it, every
other worker on every machine reads it (nothing to copy). Else the file
``<DOVECOTE_REDELIVERY_DIR>/<service>.key`` (default ``<DOVECOTE_DATA_DIR>/redelivery/``),
made on first use with 64 random hex digits, mode 0600, and shared by the service's
workers on this machine: on several machines without a database, the same file copied to
each, or the same variable in each one's environment (docs/operating.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dovecote import activity as act
from dovecote import letters, topics
from dovecote.config import ConfigError, Settings
from dovecote.dedupe import SeenIds
from dovecote.errors import InvalidActivity, InvalidLetter, StoreUnavailable
from dovecote.mqtt import Message

if TYPE_CHECKING:
    from dovecote.redelivery_record import Record

log = logging.getLogger("dovecote.redelivery")

MIN_KEY = 32  # characters: a key from the environment shorter than this is refused
VERSION = b"dovecote-letter-1"  # what is signed, and how: bump it to change either


def folder(settings: Settings) -> Path:
    return Path(settings.get_str("DOVECOTE_REDELIVERY_DIR", str(settings.data_dir / "redelivery")))


def load_key(settings: Settings, service: str) -> bytes:
    """The service's key: from the environment, else from the shared database, else its
    file (made now, in either, if there is none)."""
    given = settings.get_str("DOVECOTE_REDELIVERY_KEY", "")
    if given:
        if len(given) < MIN_KEY:
            raise ConfigError(f"DOVECOTE_REDELIVERY_KEY must be {MIN_KEY} characters or more")
        return given.encode()
    if settings.get_str("DATABASE_URL", ""):
        from dovecote.redelivery_record import Record  # SQLAlchemy: only with a database

        record = Record.for_service(settings, service)
        record.open()
        try:
            return record.key()
        finally:
            record.close()
    path = folder(settings) / f"{service}.key"
    if not path.exists():
        _make_key(path)
    text = path.read_text().strip()
    if len(text) < MIN_KEY:
        raise ConfigError(
            f"the redelivery key {path} is {len(text)} characters (damaged?): delete it to "
            f"make a new one (letters parked before cannot be replayed then), or restore it"
        )
    return text.encode()


def _make_key(path: Path) -> None:
    """Write a fresh key where none is, atomically: workers starting at once on one machine
    all end up with the first one written (a link fails where the name exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, f"{secrets.token_hex(32)}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(draft, path)
        log.info("made the redelivery key %s", path)
    except FileExistsError:
        pass  # another worker of this service made it first: that one it is
    finally:
        draft.unlink()


def signature(key: bytes, service: str, letter_id: str, topic: str, payload: bytes) -> str:
    """HMAC-SHA256 (hex) of one letter: each part length-prefixed, so no two different
    letters sign the same bytes."""
    mac = hmac.new(key, VERSION, hashlib.sha256)
    for part in (service.encode(), letter_id.encode(), topic.encode()):
        mac.update(len(part).to_bytes(4, "big"))
        mac.update(part)
    mac.update(payload)
    return mac.hexdigest()


class Seal:
    """One service's key and record: signs the letters it parks, checks those sent back."""

    def __init__(self, service: str, key: bytes, record: Record | Callable[[], Record]) -> None:
        """``record``: the record, or how to make it when the first letter comes back (so
        a worker that never redelivers never loads SQLAlchemy)."""
        self.service = service
        self._key = key
        self._record = record
        self._opened = False

    @classmethod
    def for_service(cls, settings: Settings, service: str) -> Seal:
        def record() -> Record:
            from dovecote.redelivery_record import Record

            return Record.for_service(settings, service)

        return cls(service, load_key(settings, service), record)

    @property
    def record(self) -> Record:
        if callable(self._record):
            self._record = self._record()
        return self._record

    def sign(self, letter_id: str, topic: str, payload: bytes) -> str:
        return signature(self._key, self.service, letter_id, topic, payload)

    def forged(self, letter: act.DeadLetter, payload: bytes) -> str | None:
        """Why this letter is not one this service parked as it is; None: it is."""
        if not letter.signature:
            return f"an unsigned dead letter: {self.service} redelivers only letters it signed"
        expected = self.sign(letter.id, letter.object.name, payload)
        if not hmac.compare_digest(expected, letter.signature):
            return (
                f"a dead letter whose signature does not match: not parked by {self.service} "
                "as it is (forged, or its topic or payload changed)"
            )
        return None

    def claim(self, letter_id: str, command_id: str) -> str | None:
        """None: first redelivery of the letter (recorded now); else the earlier command."""
        if not self._opened:
            self.record.open()
            self._opened = True
        return self.record.claim(letter_id, command_id)

    def close(self) -> None:
        if self._opened:
            with contextlib.suppress(Exception):
                self.record.close()
        self._opened = False


GENERIC = act.Codec(act.Activity)  # a parked payload's id, whatever its topic's type


class Redeliveries:
    """The redelivery command of one service (``commands/<service>/redeliver``), checked.

    ``unpark`` gives the original message to run in the command's place, as if it had just
    arrived on its original topic (decoding included; its ack is the command's). An id
    remembered as handled (``seen``) is forgotten first: the operator wants it handled again.
    Only a letter this service signed, unchanged, on a topic it ``handles``, redelivered for
    the first time, runs; the same command twice runs once.
    """

    def __init__(
        self,
        service: str,
        root: str,
        seal: Seal | None,
        seen: SeenIds,
        handles: Callable[[str], bool],
        log: logging.Logger,
    ) -> None:
        """``seal``: checks the letters sent back; None: none is run."""
        self.service = service
        self.root = root
        self.seal = seal
        self._seen = seen
        self._handles = handles
        self.log = log
        self.topic = topics.REDELIVER.address(root, service=service)

    def unpark(self, msg: Message) -> Message | str | None:
        """The original message to run; or why the command is parked; or None: a repeat,
        only to be acknowledged."""
        try:
            command = topics.REDELIVER.codec.decode(msg.payload)
        except InvalidActivity as exc:
            return str(exc)
        if (msg.topic, command.id) in self._seen:  # the same redelivery twice: once is asked
            return None
        self._seen.add((msg.topic, command.id))
        parked = command.object.object
        try:
            payload = letters.original(parked)
        except InvalidLetter as exc:
            return str(exc)
        refused = self._refusal(command, payload)
        if refused is not None:
            return refused
        assert self.seal is not None  # _refusal says so when there is none
        try:
            earlier = self.seal.claim(command.object.id, command.id)
        except StoreUnavailable as exc:  # not run, not claimed: the letter can be replayed
            return f"not redelivered now ({exc}): replay the letter again later"
        if earlier == command.id:  # the broker's copy of this very command, after a restart
            self.log.warning("redelivery %s ran once already: skipped", command.id)
            return None
        if earlier is not None:
            return (
                f"dead letter {command.object.id} was redelivered already (by {earlier}): a "
                "letter runs again once; if it fails again, its new letter can be replayed"
            )
        with contextlib.suppress(InvalidActivity):
            self._seen.discard((parked.name, GENERIC.decode(payload).id))
        self.log.info(
            "redelivering dead letter %s (%s) on %s", command.object.id, command.id, parked.name
        )
        return Message(parked.name, payload, msg.qos, False, msg.mid)

    def _refusal(self, command: act.Redelivery, payload: bytes) -> str | None:
        """Why this letter may not run here; None: it may (not yet claimed)."""
        if self.seal is None:
            return f"{self.service} checks no dead letters here: none is redelivered"
        forged = self.seal.forged(command.object, payload)
        if forged is not None:
            return forged
        topic = command.object.object.name
        if not topic.startswith(f"{self.root}/") or topic == self.topic or not self._handles(topic):
            return (
                f"cannot redeliver a message of {topic!r} here: {self.service} does not handle it"
            )
        return None
