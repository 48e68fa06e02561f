"""A worker that keeps nothing loads no SQLAlchemy: its start costs no database library."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dovecote.project import PROJECT

PROGRAM = """
import sys, tempfile
from dovecote.config import Settings
from dovecote.redelivery import Seal
settings = Settings.from_env({"DOVECOTE_DATA_DIR": tempfile.mkdtemp()})
seal = Seal.for_service(settings, "builder")  # what every worker makes at start
import services.builder.service, services.resizer.service, dovecote.worker
seal.close()
print("sqlalchemy" in sys.modules, "alembic" in sys.modules)
"""


@pytest.mark.fresh_process
def test_a_worker_with_no_store_imports_no_sqlalchemy() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr
