"""Where a store lives: a SQLite file of its own, or its schema of the shared PostgreSQL.

Kept apart from ``database.py`` so that naming a place (every worker does, at start)
imports no SQLAlchemy: only opening a store does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dovecote.config import ConfigError, Settings

_SCHEMA_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Place:
    """Where one store lives: a SQLAlchemy URL, and its schema on a shared PostgreSQL."""

    url: str
    schema: str | None  # None: a SQLite file of its own

    @property
    def shared(self) -> bool:
        return self.schema is not None

    @property
    def shown(self) -> str:
        """For logs: the file, or the database without its password."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    @classmethod
    def file(cls, path: Path) -> Place:
        return cls(f"sqlite:///{path}", None)

    @classmethod
    def postgres(cls, url: str, schema: str) -> Place:
        if not _SCHEMA_RE.match(schema):
            raise ConfigError(f"a store's schema must match {_SCHEMA_RE.pattern}, got {schema!r}")
        return cls(postgres_url(url), schema)


def postgres_url(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) as SQLAlchemy names psycopg 3's dialect."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise ConfigError(
            "DATABASE_URL must be postgresql://user:password@host:port/database "
            f"(or unset: each store in a SQLite file), got a {scheme or 'bare'!r} URL"
        )
    return f"postgresql+psycopg://{rest}"


def place(settings: Settings, store: str, file_variable: str | None, default_file: Path) -> Place:
    """A store's place from the environment: ``DATABASE_URL`` when set (schema ``store``),
    else the file ``file_variable`` names, else ``default_file``."""
    shared = settings.get_str("DATABASE_URL", "")
    if shared:
        return Place.postgres(shared, store)
    chosen = settings.get_str(file_variable, "") if file_variable else ""
    return Place.file(Path(chosen) if chosen else default_file)
