"""A worker started by ``dovecote run`` stops when its supervisor is gone, however it died.

The supervisor makes one pipe and keeps its write end to itself (close-on-exec: no worker
holds it); every worker inherits the read end, whose number is in
``DOVECOTE_SUPERVISOR_FD``. Nothing is ever written to it. The kernel closes the write end
when the supervisor exits, however it exits (``kill -9`` included), and the read end then
reads end of file: the worker stops as it does on SIGTERM. Signals cannot do this
portably (Linux's parent-death signal exists nowhere else), a pipe can.

A worker started any other way (systemd, a test, by hand) has no such variable and is
not affected.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Mapping

from dovecote.errors import ConfigError

ENV = "DOVECOTE_SUPERVISOR_FD"


def open_pipe() -> tuple[int, int]:
    """(read end for the workers, write end the supervisor keeps); neither is inherited
    unless passed on explicitly (``pass_fds``)."""
    return os.pipe()


def from_env(env: Mapping[str, str]) -> int | None:
    """The inherited read end, or None when no supervisor gave one."""
    raw = env.get("DOVECOTE_SUPERVISOR_FD", "").strip()  # ENV, spelled out for the env test
    if not raw:
        return None
    try:
        fd = int(raw)
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except (ValueError, OSError):
        is_pipe = False
    if not is_pipe:
        raise ConfigError(
            f"{ENV}={raw!r} is not an open pipe: `dovecote run` sets it for its own workers "
            "only; unset it to run a service on its own"
        )
    return fd


def watch(fd: int, gone: Callable[[], None]) -> None:
    """Call ``gone`` once, on the event loop, when the supervisor's end closes."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 512)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # nothing is ever written; ignore it if something is
        loop.remove_reader(fd)
        gone()

    loop.add_reader(fd, readable)
