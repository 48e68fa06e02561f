"""A service's record of the letters it redelivered, and there its key with ``DATABASE_URL``
(``dovecote.redelivery`` says why). Apart from it so that a worker imports SQLAlchemy only
when it opens the record or reads a shared key.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from sqlalchemy import text

from dovecote import activity as act
from dovecote.config import ConfigError, Settings
from dovecote.redelivery import MIN_KEY, folder
from dovecote.store import Place, Store, place
from dovecote.store.names import schema_for

log = logging.getLogger("dovecote.redelivery")

CLAIM = text(
    "INSERT INTO redelivered (letter, command, at) VALUES (:letter, :command, :at) "
    "ON CONFLICT (letter) DO NOTHING"
)
CLAIMED_BY = text("SELECT command FROM redelivered WHERE letter = :letter")
# The first worker's key wins; every other one reads it back.
MAKE_KEY = text(
    "INSERT INTO redelivery_key (one, secret, made_at) VALUES (1, :secret, :at) "
    "ON CONFLICT (one) DO NOTHING"
)
THE_KEY = text("SELECT secret FROM redelivery_key WHERE one = 1")


class Record(Store):
    """The letters this service has redelivered (a file per service and machine, or the
    service's schema of the shared database), and there its key."""

    name = "redelivery"
    migrations = Path(__file__).with_name("migrations") / "redelivery"

    def __init__(self, where: Place, name: str = "redelivery") -> None:
        super().__init__(where)
        self.name = name

    @classmethod
    def for_service(cls, settings: Settings, service: str) -> Record:
        schema = schema_for("redelivery", service)
        default = folder(settings) / f"{service}.redelivered.sqlite3"
        return cls(place(settings, schema, None, default), schema)

    def claim(self, letter_id: str, command_id: str) -> str | None:
        """None: the letter is now recorded as redelivered by ``command_id``. Else the id of
        the command that redelivered it before."""
        with self.db.transaction() as conn:
            done = conn.execute(
                CLAIM, {"letter": letter_id, "command": command_id, "at": act.now()}
            ).rowcount
            if done:
                return None
            return str(conn.execute(CLAIMED_BY, {"letter": letter_id}).scalar_one())

    def key(self) -> bytes:
        """The service's key kept here: made now if there is none yet (the first writer's
        stays, whoever asks at the same time)."""
        with self.db.transaction() as conn:
            if conn.execute(MAKE_KEY, {"secret": secrets.token_hex(32), "at": act.now()}).rowcount:
                log.info("made the redelivery key of %s in %s", self.name, self.place.shown)
            secret = str(conn.execute(THE_KEY).scalar_one())
        if len(secret) < MIN_KEY:
            raise ConfigError(f"the redelivery key in {self.place.shown} ({self.name}) is damaged")
        return secret.encode()
