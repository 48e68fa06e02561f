"""The dead-letter store: one SQLite row per letter, the letter's activity id its identity.

A letter redelivered by the broker (this service was killed before its ack) inserts
nothing. The whole letter is kept as published, so a replay sends back exactly what the
failing service parked. WAL, ``synchronous=NORMAL``: durable against a crash of this process.
"""

from __future__ import annotations

from dataclasses import dataclass

from dovecote.sqlite import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS letters (
    id            TEXT PRIMARY KEY,   -- the Flag's activity id
    service       TEXT NOT NULL,      -- who parked it
    topic         TEXT NOT NULL,      -- the original topic
    reason        TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    published     TEXT NOT NULL,      -- when it was parked
    letter        BLOB NOT NULL,      -- the Flag, as published
    replays       INTEGER NOT NULL DEFAULT 0,
    last_replayed TEXT
);
CREATE INDEX IF NOT EXISTS letters_service ON letters (service, published);
"""


@dataclass(frozen=True)
class Letter:
    id: str
    service: str
    topic: str
    reason: str
    attempts: int
    size: int
    published: str
    letter: bytes
    replays: int
    last_replayed: str | None


class Store(SqliteFile):
    schema = SCHEMA

    def keep(self, letter: Letter) -> bool:
        """True if the letter is new."""
        return bool(
            self.db.execute(
                "INSERT INTO letters (id, service, topic, reason, attempts, size, published, "
                "letter) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    letter.id,
                    letter.service,
                    letter.topic,
                    letter.reason,
                    letter.attempts,
                    letter.size,
                    letter.published,
                    letter.letter,
                ),
            ).rowcount
        )

    def find(
        self, service: str | None = None, limit: int = 100, unreplayed: bool = False
    ) -> tuple[list[Letter], int]:
        """The newest letters (of one service), at most ``limit``, and how many match."""
        where, args = [], []
        if service is not None:
            where.append("service = ?")
            args.append(service)
        if unreplayed:
            where.append("replays = 0")
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        total = int(self.db.execute(f"SELECT count(*) FROM letters {cond}", args).fetchone()[0])
        rows = self.db.execute(
            f"SELECT * FROM letters {cond} ORDER BY published DESC, rowid DESC LIMIT ?",
            [*args, limit],
        ).fetchall()
        return [self._letter(r) for r in rows], total

    def get(self, letter_id: str) -> Letter | None:
        row = self.db.execute("SELECT * FROM letters WHERE id = ?", (letter_id,)).fetchone()
        return None if row is None else self._letter(row)

    def replayed(self, letter_id: str, when: str) -> None:
        self.db.execute(
            "UPDATE letters SET replays = replays + 1, last_replayed = ? WHERE id = ?",
            (when, letter_id),
        )

    @staticmethod
    def _letter(row: tuple[object, ...]) -> Letter:
        return Letter(
            str(row[0]),
            str(row[1]),
            str(row[2]),
            str(row[3]),
            int(row[4]),  # type: ignore[call-overload]
            int(row[5]),  # type: ignore[call-overload]
            str(row[6]),
            bytes(row[7]),  # type: ignore[call-overload]
            int(row[8]),  # type: ignore[call-overload]
            None if row[9] is None else str(row[9]),
        )
