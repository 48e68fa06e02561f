"""The images store in a database: what each image is, its thumbnails, their bytes, and the
upload allowance of each person.

Revision ID: images_0001
Revises:

Nothing to adopt: before this revision photos were files under ``IMAGES_DIR`` only (that
store is still the default, and still serves them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "images_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        # The order they were stored in: the gallery's, newest first.
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("id", sa.Text(), nullable=False, unique=True),  # uuid4 hex, never reused
        sa.Column("media_type", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),  # bytes
        sa.Column("record", sa.Text(), nullable=False),  # the AS2 Image as published (JSON)
    )
    op.create_table(
        "thumbnails",
        sa.Column("image_id", sa.Text(), primary_key=True),
        sa.Column("size", sa.Integer(), primary_key=True),  # px, the longer side's bound
        sa.Column("media_type", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("blob", sa.Text(), nullable=False),  # its chunks
    )
    op.create_table(
        # A file's bytes, CHUNK_BYTES a row: written and served a chunk at a time, so neither
        # side ever holds a whole file for the database's sake.
        "chunks",
        sa.Column("blob", sa.Text(), primary_key=True),  # an original's: its image id
        sa.Column("n", sa.Integer(), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        # RATE_UPLOADS_PERSON's token bucket per person, shared by every gateway.
        "allowances",
        sa.Column("person", sa.Text(), primary_key=True),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),  # Unix time of ``tokens``
    )


def downgrade() -> None:
    for table in ("allowances", "chunks", "thumbnails", "images"):
        op.drop_table(table)
