"""One federation per data folder: ``dovecote run`` refuses to start a second generation.

The supervisor locks ``run.lock`` in the run's data folder with ``flock``, and every worker
inherits the locked descriptor. The kernel releases the lock when the last process holding
it exits, however it exits: a dead supervisor cannot leave it behind, and a worker still
finishing after its supervisor died (``dovecote.lifeline``) keeps the folder locked until
it is gone. ``run.json`` beside it says who holds it, for the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dovecote.errors import DovecoteError


class AlreadyRunning(DovecoteError, RuntimeError):
    """Another generation runs from this folder; ``str()`` says what and how to stop it."""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive all the same
    return True


@dataclass
class RunLock:
    folder: Path  # the run's data folder (DOVECOTE_DATA_DIR)
    fd: int = -1
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def lock_path(self) -> Path:
        return self.folder / "run.lock"

    @property
    def info_path(self) -> Path:
        return self.folder / "run.json"

    def acquire(self, command: list[str]) -> int:
        """Lock the folder for this run, or raise ``AlreadyRunning``. Returns the locked
        descriptor, for the workers to inherit (``pass_fds``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self.holder()) from None
        self.fd = fd
        self.info = {
            "supervisor": os.getpid(),
            "command": " ".join(command),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "workers": {},
        }
        self._write()
        return fd

    def record(self, workers: dict[str, int]) -> None:
        """Which worker runs as which process now (after every start and restart)."""
        self.info["workers"] = workers
        self._write()

    def release(self) -> None:
        """Our copy only: workers still running keep the folder locked until they exit."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _write(self) -> None:
        # Replaced whole (rename), never the lock file itself: a reader sees one version.
        tmp = self.info_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.info, indent=1))
        tmp.replace(self.info_path)

    def holder(self) -> str:
        """What holds the folder, and how to stop it: the text of the refusal."""
        info: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(self.info_path.read_text())
        supervisor = info.get("supervisor")
        workers = {label: pid for label, pid in dict(info.get("workers", {})).items() if alive(pid)}
        where = f"a federation is already running from this folder (data in {self.folder})"
        if not isinstance(supervisor, int):
            return (
                f"{where}: another `dovecote run` holds {self.lock_path}. Stop it first "
                f"(`fuser -v {self.lock_path}` lists its processes)."
            )
        rows = [(label, pid) for label, pid in sorted(workers.items())]
        width = max([len("dovecote run"), *(len(label) for label, _ in rows)])
        lines = [f"{where}, started {info.get('started', '?')}:"]
        if alive(supervisor):
            head = "dovecote run".ljust(width)
            lines.append(f"  {head}  pid {supervisor}  ({info.get('command')})")
            lines += [f"  {label.ljust(width)}  pid {pid}" for label, pid in rows]
            lines.append(f"Stop it with Ctrl-C in its terminal, or: kill {supervisor}")
        else:
            lines.append(
                f"  its `dovecote run` (pid {supervisor}) is gone; these workers are still "
                "stopping on their own:"
            )
            lines += [f"  {label.ljust(width)}  pid {pid}" for label, pid in rows]
            pids = " ".join(str(pid) for _, pid in rows)
            lines.append(
                f"Wait a few seconds, or stop them: kill {pids}" if pids else "Try again now."
            )
        return "\n".join(lines)
