"""Alembic's environment for every Dovecote store (``dovecote.store.migrate`` runs it).

The store's engine, schema and versions folder come in ``config.attributes``: one
environment, each store's revisions in its own folder, its own version table
(``alembic_version`` in its schema on PostgreSQL, in its file on SQLite).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

config = context.config
engine = config.attributes["engine"]
schema = config.attributes["schema"]

with engine.connect() as conn, conn.begin():
    if schema is not None:
        # One migrator at a time per store, across every machine: the others wait here,
        # then find the schema at head and do nothing.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema})
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        conn.execute(text(f'SET LOCAL search_path TO "{schema}"'))
    # On SQLite the transaction began IMMEDIATE (database.py): the same one-at-a-time.
    context.configure(
        connection=conn,
        version_table_schema=schema,
        render_as_batch=schema is None,  # SQLite alters a table by copying it
        transactional_ddl=True,
    )
    before = context.get_context().get_current_revision()
    context.run_migrations()
    config.attributes["revisions"] = (before, context.get_context().get_current_revision())
