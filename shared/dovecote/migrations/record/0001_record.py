"""A service's record: one row per effect, keyed on (cause, kind, who), in order.

Revision ID: record_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dovecote.store.migrations import has_table

revision = "record_0001"
down_revision = None
branch_labels = None
depends_on = None

COLUMNS = "cause, kind, who, data, at"


def upgrade() -> None:
    # A record made before migrations (SQLite): ordered by its rowid, ``at`` defaulted by
    # SQLite's strftime. Copied into the new table, each row's rowid as its id.
    legacy = has_table("record")
    if legacy:
        op.rename_table("record", "record_before_0001")
        op.drop_index("record_kind_who")
    op.create_table(
        "record",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("cause", sa.Text(), nullable=False),  # the id of the activity that caused it
        sa.Column("kind", sa.Text(), nullable=False),  # what it was: "upload", "badge", ...
        sa.Column("who", sa.Text(), nullable=False, server_default=""),  # '': no one
        sa.Column("data", sa.Text()),  # anything else, as JSON
        sa.Column("at", sa.Text(), nullable=False),  # when (RFC 3339, ms), the app's clock
        sa.UniqueConstraint("cause", "kind", "who", name="record_cause_kind_who"),
    )
    op.create_index("record_kind_who", "record", ["kind", "who"])
    if legacy:
        op.execute(
            f"INSERT INTO record (id, {COLUMNS}) "
            f"SELECT rowid, {COLUMNS} FROM record_before_0001 ORDER BY rowid"
        )
        op.drop_table("record_before_0001")


def downgrade() -> None:
    op.drop_table("record")
