"""The accounts store: people, follows, tokens, sign-ins, invitations, sign-in guesses and
the keys every gateway shares.

Adopts a file made before migrations (``CREATE TABLE IF NOT EXISTS`` at every open, and the
columns added since the first release): its tables stay, missing columns are added and
filled, and ``guesses`` gains an ``id`` (it was counted by SQLite's ``rowid``, which
PostgreSQL has not): the rows are copied with their rowid as it.

Revision ID: accounts_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dovecote.store.migrations import has_table

revision = "accounts_0001"
down_revision = None
branch_labels = None
depends_on = None

# An id that is SQLite's rowid there (INTEGER PRIMARY KEY) and a bigint identity elsewhere.
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    _people()
    _create(
        "follows",
        sa.Column("follower", sa.Text(), sa.ForeignKey("people.id"), primary_key=True),
        sa.Column("followee", sa.Text(), sa.ForeignKey("people.id"), primary_key=True),
        sa.Column("since", sa.Text(), nullable=False),
    )
    _index("follows_followee", "follows", ["followee", "follower"])
    _create(
        "tokens",
        sa.Column("id", sa.Text(), primary_key=True),  # the public part, in the token itself
        sa.Column("person", sa.Text(), sa.ForeignKey("people.id"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),  # SHA-256 of the secret part
        sa.Column("created", sa.Text(), nullable=False),
        sa.Column("last_used", sa.Text()),
        sa.Column("last_address", sa.Text()),
    )
    _add_missing("tokens", sa.Column("last_address", sa.Text()))
    _index("tokens_person", "tokens", ["person", "created"])
    _create(
        "sessions",  # sign-ins (signins.py): the handle is public, the secret kept as digest
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("person", sa.Text(), sa.ForeignKey("people.id"), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.Text(), nullable=False),
        sa.Column("expires", sa.Text(), nullable=False),
        sa.Column("last_used", sa.Text(), nullable=False),
        sa.Column("address", sa.Text()),
        sa.Column("agent", sa.Text()),
    )
    _index("sessions_person", "sessions", ["person", "created"])
    _index("sessions_expires", "sessions", ["expires"])
    _create(
        "invites",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("made_by", sa.Text(), nullable=False),
        sa.Column("created", sa.Text(), nullable=False),
        sa.Column("expires", sa.Text(), nullable=False),
        sa.Column("used_by", sa.Text()),
        sa.Column("used", sa.Text()),
    )
    _guesses()
    # New: secrets every gateway must share (the session key when DOVECOTE_SESSION_KEY is
    # unset), written once by the first gateway and read back by every other.
    op.create_table(
        "shared_keys",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created", sa.Text(), nullable=False),
    )


def _people() -> None:
    created = _create(
        "people",
        sa.Column("id", sa.Text(), primary_key=True),  # the user id, /users/<id>
        sa.Column("name", sa.Text(), nullable=False),  # display name
        sa.Column("password", sa.Text(), nullable=False),  # Argon2id hash (PHC string)
        sa.Column("created", sa.Text(), nullable=False),
        sa.Column("operator", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("id_key", sa.Text()),  # names.lookalike_key of the id and the name
        sa.Column("name_key", sa.Text()),
    )
    if not created:  # columns added after the first release, then keys for older rows
        _add_missing(
            "people",
            sa.Column("operator", sa.Integer(), nullable=False, server_default="0"),
            sa.Column("id_key", sa.Text()),
            sa.Column("name_key", sa.Text()),
        )
        _fill_lookalike_keys()
    _index("people_id_key", "people", ["id_key"])
    _index("people_name_key", "people", ["name_key"])


def _fill_lookalike_keys() -> None:
    # The key as the gateway computed it when this revision was written (names.py).
    from services.gateway.accounts.names import lookalike_key

    conn = op.get_bind()
    unkeyed = conn.execute(
        sa.text("SELECT id, name FROM people WHERE id_key IS NULL OR name_key IS NULL")
    ).all()
    for person_id, name in unkeyed:
        conn.execute(
            sa.text("UPDATE people SET id_key = :i, name_key = :n WHERE id = :id"),
            {"i": lookalike_key(person_id), "n": lookalike_key(name), "id": person_id},
        )


def _guesses() -> None:
    legacy = has_table("guesses")  # rows numbered by rowid only
    if legacy:
        op.drop_index("guesses_key")
        op.drop_index("guesses_at")
        op.rename_table("guesses", "guesses_before_0001")
    op.create_table(
        "guesses",
        sa.Column("id", ROW_ID, primary_key=True),  # a reservation, taken back if right
        sa.Column("key", sa.Text(), nullable=False),  # 'account:<name>' or 'device:<nonce>'
        sa.Column("at", sa.Double(), nullable=False),  # Unix time
    )
    op.create_index("guesses_key", "guesses", ["key", "at"])
    op.create_index("guesses_at", "guesses", ["at"])
    if legacy:
        op.execute(
            "INSERT INTO guesses (id, key, at) "
            "SELECT rowid, key, at FROM guesses_before_0001 ORDER BY rowid"
        )
        op.drop_table("guesses_before_0001")


def _create(table: str, *columns: sa.Column[object]) -> bool:
    """Make the table unless a store made before migrations has it; True if made."""
    if has_table(table):
        return False
    op.create_table(table, *columns)
    return True


def _add_missing(table: str, *columns: sa.Column[object]) -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    for column in columns:
        if column.name not in have:
            op.add_column(table, column)


def _index(name: str, table: str, columns: list[str]) -> None:
    op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    for table in ("shared_keys", "guesses", "invites", "sessions", "tokens", "follows"):
        op.drop_table(table)
    op.drop_table("people")
