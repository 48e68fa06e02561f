"""The letters a service redelivered, one row each; and its redelivery key, where shared.

Revision ID: redelivery_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dovecote.store.migrations import has_table

revision = "redelivery_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A record made before migrations (SQLite) has this very table: adopted as it is.
    if not has_table("redelivered"):
        op.create_table(
            "redelivered",
            sa.Column("letter", sa.Text(), primary_key=True),  # the Flag's id
            sa.Column("command", sa.Text(), nullable=False),  # the command that ran it
            sa.Column("at", sa.Text(), nullable=False),
        )
    # The key, when the service keeps it here (DATABASE_URL without DOVECOTE_REDELIVERY_KEY):
    # one row, made by the first worker to start.
    op.create_table(
        "redelivery_key",
        sa.Column("one", sa.Integer(), sa.CheckConstraint("one = 1"), primary_key=True),
        sa.Column("secret", sa.Text(), nullable=False),  # 64 hex digits
        sa.Column("made_at", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("redelivery_key")
    op.drop_table("redelivered")
