"""A store at head opens without Alembic (dovecote.store.migrations): its head is read from
the revision files' text, which must agree with Alembic, and a store behind it (a release
that adds a revision) is still migrated, on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from dovecote.project import PROJECT
from dovecote.store import Store
from dovecote.store.migrations import ENVIRONMENT, head_of
from dovecote_testing.plugin import Databases

FOLDERS = sorted(
    p
    for pattern in ("services/**/migrations", "shared/dovecote/migrations/*")
    for p in PROJECT.glob(pattern)
    if any(p.glob("*.py"))
)

NEXT_REVISION = '''"""A second table, as a later release would add it.

Revision ID: points_0002
Revises: points_0001
"""

import sqlalchemy as sa
from alembic import op

revision: str = "points_0002"
down_revision: str | None = "points_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("extra", sa.Column("id", sa.Integer(), primary_key=True))
'''


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: str(p.relative_to(PROJECT)))
def test_the_head_read_from_the_files_is_alembics(folder: Path) -> None:
    script = ScriptDirectory(str(ENVIRONMENT), version_locations=[str(folder)])
    assert [head_of(folder)] == script.get_heads()


def test_two_heads_or_an_unplain_revision_leave_it_to_alembic(tmp_path: Path) -> None:
    for name, text in {
        "a.py": 'revision = "a"\ndown_revision = None\n',
        "b.py": 'revision = "b"\ndown_revision = "a"\n',
        "c.py": "revision = 'c'\ndown_revision = 'a'\n",
    }.items():
        (tmp_path / name).write_text(text)
    assert head_of(tmp_path) is None  # b and c: two heads
    (tmp_path / "d.py").write_text('revision = "d"\ndown_revision = ("b", "c")  # a merge\n')
    assert head_of(tmp_path) == "d"
    (tmp_path / "e.py").write_text('revision = make_one()\ndown_revision = "d"\n')
    assert head_of(tmp_path) is None


class Growing(Store):
    """The points ledger's revisions in a folder of the test's own, to add one to."""

    name = "points"
    migrations: ClassVar[Path]


def tables(store: Store) -> set[str]:
    with store.db.transaction() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_a_release_with_a_new_revision_migrates_a_store_at_the_old_head(
    databases: Databases, tmp_path: Path
) -> None:
    Growing.migrations = tmp_path / "versions"
    shutil.copytree(PROJECT / "services/points/migrations", Growing.migrations)
    place = databases.place("points")
    first = Growing(place).open()
    assert "awards" in tables(first) and "extra" not in tables(first)
    first.close()
    again = Growing(place).open()  # at head: nothing to do
    again.close()
    (Growing.migrations / "0002_extra.py").write_text(NEXT_REVISION)
    upgraded = Growing(place).open()
    try:
        assert {"awards", "extra"} <= tables(upgraded)
        with upgraded.db.transaction() as conn:
            version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        assert version == [("points_0002",)]
    finally:
        upgraded.close()


PROGRAM = """
import sys
from dovecote.store import Place
from services.points.ledger import Ledger
ledger = Ledger(Place.file(sys.argv[1])).open()
ledger.close()
print("alembic" in sys.modules)
"""


@pytest.mark.fresh_process
def test_a_store_at_head_opens_without_loading_alembic(tmp_path: Path) -> None:
    path = str(tmp_path / "points.sqlite3")

    def opened() -> str:
        out = subprocess.run(
            [sys.executable, "-c", PROGRAM, path], cwd=PROJECT, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert opened() == "True"  # a new store: Alembic makes it
    assert opened() == "False"  # at head: one query
