"""A private PostgreSQL server for tests and benchmarks: ``initdb`` + ``pg_ctl`` on a free port.

From Debian's ``postgresql`` package (``make test`` installs it), isolated from any server
the machine runs: its own data folder, port and socket folder, trust authentication on
loopback only. ``fsync=off`` for tests (a test never survives a power cut; it must not wait
for the disk either); benchmarks start it with ``durable=True``, as a deployment runs.
Stopped with ``stop()``, or killed and restarted by the tests that want a database outage.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dovecote.tools.broker import free_port


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server programs here, or the private server would not start."""


def _bindir() -> Path:
    """Debian keeps initdb and pg_ctl out of PATH, under /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    majors = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major, reverse=True)
    if not majors:
        raise PostgresUnavailable(
            "no PostgreSQL server programs (initdb): sudo apt-get install -y postgresql"
        )
    return Path(majors[0]).parent


def _major(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


@dataclass
class PrivatePostgres:
    directory: Path
    durable: bool = False
    port: int = 0

    def __post_init__(self) -> None:
        self.bin = _bindir()
        self.data = self.directory / "data"
        self.sockets = self.directory / "run"
        self.logfile = self.directory / "postgres.log"

    # --- the server --------------------------------------------------------------------

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self.sockets.mkdir(exist_ok=True)
            self._own(self.directory)
            self._as_owner(
                str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C",
            )  # fmt: skip
        if not self.port:
            self.port = free_port()
        options = [
            f"-p {self.port}",
            f"-k {self.sockets}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=400",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._as_owner(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
            "-o", " ".join(options), "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown; ``immediate``: as if killed (recovery on next start)."""
        if (self.data / "postmaster.pid").exists():
            self._as_owner(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop",
                check=False,
            )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
             "-c", statement],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise PostgresUnavailable(f"psql {statement!r}: {out.stderr.strip()}")
        return out.stdout.strip()

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    # --- running as a user PostgreSQL accepts --------------------------------------------

    def _own(self, path: Path) -> None:
        """initdb refuses root: as root, the folder goes to the postgres user."""
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
            for child in path.iterdir():
                shutil.chown(child, "postgres", "postgres")

    def _as_owner(self, *argv: str, check: bool = True) -> None:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        started = time.monotonic()
        out = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
        if check and out.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(argv[0]).name} failed after {time.monotonic() - started:.1f} s: "
                f"{(out.stderr or out.stdout).strip()[-2000:]}\n{self.log()[-2000:]}"
            )
