"""Schema migrations: each store's Alembic revisions, run when the store opens.

A store keeps its revisions in a folder of its own (``services/points/migrations/``), and
the database its version (``alembic_version``): opening a store made by an older release
upgrades it in place, and a store already at head costs one query. Revisions are plain
Alembic (``op.create_table``, ``op.batch_alter_table``, ...); see docs/deploying.md for how
to write one.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import sqlalchemy as sa

from dovecote.store.database import Database

ENVIRONMENT = Path(__file__).with_name("alembic")
log = logging.getLogger("dovecote.store")
# Alembic's own lines (its context, each plugin) at every start say nothing; ours below
# says when a store was migrated, from what to what.
logging.getLogger("alembic").setLevel(logging.WARNING)


def upgrade(db: Database, versions: Path) -> None:
    """Bring the store to its newest revision (under a lock: workers may start at once)."""
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
