"""The letters, in the order they were kept, and what they hold (``held``).

Revision ID: deadletters_0001
Revises:
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

from dovecote.store.migrations import has_table

revision = "deadletters_0001"
down_revision = None
branch_labels = None
depends_on = None

COLUMNS = "id, service, topic, reason, attempts, size, published, letter, replays, last_replayed"
ROW_OVERHEAD = 64  # as services/deadletters/store.py counts a row
# A letter's bytes, as the store counts them, for a store made before it counted them.
COUNTED = (
    "length(letter) + length(CAST(id AS BLOB)) + length(CAST(service AS BLOB)) "
    "+ length(CAST(topic AS BLOB)) + length(CAST(reason AS BLOB)) "
    f"+ length(CAST(published AS BLOB)) + {ROW_OVERHEAD}"
)


def upgrade() -> None:
    legacy = has_table("letters")  # a SQLite store made before migrations
    if legacy:
        # Its held count was kept by triggers, which would count twice now: the store
        # counts in its own statements (one set of queries for SQLite and PostgreSQL).
        op.execute("DROP TRIGGER IF EXISTS letters_held_in")
        op.execute("DROP TRIGGER IF EXISTS letters_held_out")
        op.execute("DROP TABLE IF EXISTS held")
        op.execute("DROP INDEX IF EXISTS letters_kept_at")
        op.execute("DROP INDEX IF EXISTS letters_service")
        op.rename_table("letters", "letters_before_0001")
    op.create_table(
        "letters",
        # The order they were kept in: the oldest go first past the byte cap.
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("id", sa.Text(), nullable=False),  # the Flag's activity id
        sa.Column("service", sa.Text(), nullable=False),  # who parked it
        sa.Column("topic", sa.Text(), nullable=False),  # the original topic
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("published", sa.Text(), nullable=False),  # when it was parked
        sa.Column("letter", sa.LargeBinary(), nullable=False),  # the Flag, as published
        sa.Column("replays", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_replayed", sa.Text()),
        sa.Column("kept_at", sa.Float(), nullable=False),  # when kept here (unix seconds)
        sa.Column("bytes", sa.BigInteger(), nullable=False),  # what it counts against the cap
        sa.UniqueConstraint("id", name="letters_id"),
    )
    op.create_index("letters_service", "letters", ["service", "published"])
    op.create_index("letters_kept_at", "letters", ["kept_at"])
    op.create_table(
        "held",
        sa.Column("one", sa.Integer(), sa.CheckConstraint("one = 1"), primary_key=True),
        sa.Column("letters", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
    )
    if legacy:
        have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("letters_before_0001")}
        # A store made before the caps: its letters kept "now" (their age limit runs from
        # the upgrade), each counted as the store counts it.
        kept_at = "kept_at" if "kept_at" in have else repr(time.time())
        counted = "bytes" if "bytes" in have else COUNTED
        op.execute(
            f"INSERT INTO letters (seq, {COLUMNS}, kept_at, bytes) "
            f"SELECT rowid, {COLUMNS}, {kept_at}, {counted} FROM letters_before_0001 "
            "ORDER BY rowid"
        )
        op.drop_table("letters_before_0001")
    op.execute(
        "INSERT INTO held (one, letters, bytes) "
        "SELECT 1, count(*), coalesce(sum(bytes), 0) FROM letters"
    )


def downgrade() -> None:
    op.drop_table("held")
    op.drop_table("letters")
