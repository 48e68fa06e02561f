"""The notes table: each person's notifications in arrival order, one per (person, id).

Revision ID: inbox_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dovecote.store.migrations import has_table

revision = "inbox_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    if has_table("notes"):
        # An inbox made before migrations (CREATE TABLE IF NOT EXISTS, SQLite): the same
        # columns, seq an INTEGER PRIMARY KEY AUTOINCREMENT. Adopted as it is.
        return
    op.create_table(
        "notes",
        # Arrival order (the newest are kept, the oldest trimmed).
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("person", sa.Text(), nullable=False),  # the user id notified
        sa.Column("id", sa.Text(), nullable=False),  # the notification's activity id
        sa.Column("note", sa.LargeBinary(), nullable=False),  # as published
        sa.Column("read", sa.Integer(), nullable=False, server_default="0"),
        sa.UniqueConstraint("person", "id", name="notes_person_id"),
    )
    op.create_index("notes_person", "notes", ["person", "seq"])


def downgrade() -> None:
    op.drop_table("notes")
