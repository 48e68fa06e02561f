"""Schema migrations: each store's Alembic revisions, run when the store opens.

A store keeps its revisions in a folder of its own (``services/points/migrations/``), and
the database its version (``alembic_version``): opening a store made by an older release
upgrades it in place, and a store already at head costs one query, Alembic not even loaded
(~0.15 s of CPU at each start: the head is read from the revision files' text). Revisions
are plain Alembic (``op.create_table``, ``op.batch_alter_table``, ...); see
docs/deploying.md for how to write one.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import sqlalchemy as sa

from dovecote.store.database import Database

ENVIRONMENT = Path(__file__).with_name("alembic")
log = logging.getLogger("dovecote.store")
# Alembic's own lines (its context, each plugin) at every start say nothing; ours below
# says when a store was migrated, from what to what.
logging.getLogger("alembic").setLevel(logging.WARNING)


# In a revision file: ``revision = "points_0002"``, ``down_revision = "points_0001"`` (or a
# tuple of them, or None), as Alembic writes them; annotated or not.
_REVISION = re.compile(r"^revision(?:\s*:[^=]*)?\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN = re.compile(r"^down_revision(?:\s*:[^=]*)?\s*=(.*)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


def head_of(versions: Path) -> str | None:
    """The one head revision of a folder, read from its files' text; None when it cannot be
    told so (two heads, a file that does not say its revision plainly): Alembic decides."""
    revisions: set[str] = set()
    below: set[str] = set()
    for path in versions.glob("*.py"):
        text = path.read_text()
        found, down = _REVISION.search(text), _DOWN.search(text)
        if found is None or down is None:
            return None
        revisions.add(found[1])
        below.update(_QUOTED.findall(down[1]))
    heads = revisions - below
    return heads.pop() if len(heads) == 1 else None


def at_head(db: Database, versions: Path) -> bool:
    """True when the store's version is the folder's head: nothing to do. Any doubt (no
    version table yet: a new store) is False: Alembic looks. A database out of reach raises
    ``StoreUnavailable``, as Alembic's first query would."""
    head = head_of(versions)
    if head is None:
        return False
    table = "alembic_version" if db.place.schema is None else f'"{db.place.schema}".alembic_version'
    try:
        with db.unavailable_as_error(), db.engine.connect() as conn:
            found = conn.execute(sa.text(f"SELECT version_num FROM {table}")).scalars().all()
    except sa.exc.SQLAlchemyError:
        return False
    return found == [head]


def upgrade(db: Database, versions: Path) -> None:
    """Bring the store to its newest revision (under a lock: workers may start at once)."""
    if at_head(db, versions):
        return
    # Imported here: Alembic (and Mako) load only when a store opens, not with the runtime.
    # Mako's error pages highlight code with Pygments when it is installed (beside pytest,
    # never in production): ~0.1 s of CPU at every start, for pages no store renders.
    # Without it Mako escapes instead, as it does in production.
    sys.modules.setdefault("mako.ext.pygmentplugin", None)  # type: ignore[arg-type]
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ENVIRONMENT))
    config.set_main_option("version_locations", str(versions))
    config.set_main_option("path_separator", "os")
    config.attributes["engine"] = db.engine
    config.attributes["schema"] = db.place.schema
    with db.unavailable_as_error():
        command.upgrade(config, "heads")
    before, after = config.attributes.get("revisions", (None, None))
    if before != after:
        log.info("the %s store (%s) migrated: %s -> %s", db.store, db.place.shown, before, after)


def has_table(name: str) -> bool:
    """In a revision: does the table exist already? A store made before migrations existed
    (by ``CREATE TABLE IF NOT EXISTS``) has its first tables; its first revision adopts
    them instead of failing."""
    from alembic import op

    return sa.inspect(op.get_bind()).has_table(name)
