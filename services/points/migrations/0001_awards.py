"""The awards table: one row per award, the activity that earned it as its identity.

Revision ID: points_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dovecote.store.migrations import has_table

revision = "points_0001"
down_revision = None
branch_labels = None
depends_on = None

COLUMNS = "cause, rule, person, username, name, points, context, awarded_at"


def upgrade() -> None:
    legacy = has_table("awards")  # a ledger made before migrations: ordered by its rowid
    if legacy:
        op.rename_table("awards", "awards_before_0001")
        op.drop_index("awards_person")
    op.create_table(
        "awards",
        # The order of awards (ties on the leaderboard go to who got there first).
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("cause", sa.Text(), nullable=False),  # the id of the activity that earned it
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("person", sa.Text(), nullable=False),  # the person's AS2 id (a URL)
        sa.Column("username", sa.Text()),
        sa.Column("name", sa.Text()),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("context", sa.Text()),
        sa.Column("awarded_at", sa.Text(), nullable=False),
        sa.UniqueConstraint("cause", "rule", name="awards_cause_rule"),
    )
    op.create_index("awards_person", "awards", ["person"])
    if legacy:
        op.execute(
            f"INSERT INTO awards (id, {COLUMNS}) "
            f"SELECT rowid, {COLUMNS} FROM awards_before_0001 ORDER BY rowid"
        )
        op.drop_table("awards_before_0001")


def downgrade() -> None:
    op.drop_table("awards")
