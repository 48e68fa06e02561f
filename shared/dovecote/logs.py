"""Logging set-up: one line per event, to stderr, level from LOG_LEVEL, format from LOG_FORMAT.

``text`` (the default) is for a person: the supervisor prefixes each line with the worker's
name (``builder.1 |``), so a service prints no name of its own beyond the logger's.

``json`` is for a machine (journald, a log shipper): one JSON object per line with
``time`` (RFC 3339, UTC), ``service``, ``instance``, ``level``, ``logger``, ``message`` and
``context``, the correlation id of the work the line is about. A log call names it with
``[context=...]`` at the end of its message, the project's convention (the text format
shows it as it is), or with ``extra={"context": ...}``; the JSON format moves it out of
the message into its own field. A traceback goes in ``error``.

A warning that repeats is said a few times, then counted: at most ``REPEATS_SAID`` lines a
``REPEATS_WINDOW`` from one place in the code at WARNING or above, and when that window
closes one line says how many more there were and the last of them (``Repeats``). So a
flood of bad input costs the log a few lines a minute, not one per message; every such
event is also counted in the worker's metrics where it matters (parks, drops, closes).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from dovecote.errors import ConfigError

_CONTEXT = re.compile(r"\s*\[context=([^\]\s]*)\]\s*$")
REPEATS_SAID = 5  # lines from one call site in one window
REPEATS_WINDOW = 60.0  # seconds


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, service: str, instance: str) -> None:
        super().__init__()
        self.service = service
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        context = getattr(record, "context", None)
        found = _CONTEXT.search(message)
        if found:
            message = message[: found.start()]
            context = context or found.group(1)
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "service": self.service,
            "instance": self.instance,
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "context": context if context and context != "None" else None,
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


@dataclass
class _Site:
    since: float  # when its window opened
    said: int = 0
    held: int = 0  # not said in this window
    last: logging.LogRecord | None = None  # the last one not said


class Repeats(logging.Filter):
    """Lines at WARNING and above: ``said`` a window from one call site, the rest counted
    and summed up in one line when the window closes (a timer, so a flood that stops is
    still reported)."""

    def __init__(
        self,
        handler: logging.Handler,
        said: int = REPEATS_SAID,
        window: float = REPEATS_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.handler = handler
        self.said, self.window, self.clock = said, window, clock
        self.sites: dict[tuple[str, int], _Site] = {}
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "repeats", False):
            return True
        now, key = self.clock(), (record.pathname, record.lineno)
        with self.lock:
            site = self.sites.get(key)
            if site is None or now - site.since >= self.window:
                closed = site
                site = self.sites[key] = _Site(now)
            else:
                closed = None
            site.said += 1
            say = site.said <= self.said
            if not say:
                site.held += 1
                site.last = record
                self._wake_at(site.since + self.window - now)
        if closed is not None:
            self._sum_up(closed)
        return say

    def _wake_at(self, delay: float) -> None:
        if self.timer is None:
            self.timer = threading.Timer(max(0.0, delay), self.flush)
            self.timer.daemon = True
            self.timer.start()

    def flush(self) -> None:
        """Say what each closed window held back (the timer calls it; so may a test)."""
        now = self.clock()
        with self.lock:
            self.timer = None
            closed = [s for s in self.sites.values() if s.held and now - s.since >= self.window]
            for key in [k for k, s in self.sites.items() if now - s.since >= self.window]:
                del self.sites[key]
            waiting = [s.since + self.window - now for s in self.sites.values() if s.held]
            if waiting:
                self._wake_at(min(waiting))
        for site in closed:
            self._sum_up(site)

    def _sum_up(self, site: _Site) -> None:
        last = site.last
        if not site.held or last is None:
            return
        line = logging.makeLogRecord(
            {
                **last.__dict__,
                "msg": "%d more like this in %.0f s, not logged one by one; the last: %s",
                "args": (site.held, self.window, last.getMessage()),
                "exc_info": None,
                "exc_text": None,
                "repeats": True,
            }
        )
        self.handler.handle(line)


def repeats_from(raw: str) -> tuple[int, float] | None:
    """``LOG_REPEATS``: ``N/SECONDS`` (lines from one call site a window), or ``0``: every line."""
    text = raw.strip()
    if text in ("0", "off"):
        return None
    said, _, window = text.partition("/")
    try:
        found = int(said), float(window or REPEATS_WINDOW)
    except ValueError:
        found = (0, 0.0)
    if found[0] < 1 or not 0 < found[1] <= 86_400:
        raise ConfigError(f"LOG_REPEATS must be N/SECONDS (e.g. 5/60) or 0: {raw!r}")
    return found


def setup_logging(
    level: str = "INFO",
    fmt: str = "text",
    service: str = "",
    instance: str = "",
    repeats: tuple[int, float] | None = (REPEATS_SAID, REPEATS_WINDOW),
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLines(service, instance))
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"
            )
        )
    if repeats is not None:
        handler.addFilter(Repeats(handler, *repeats))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs every request at INFO: useful behind a proxy, noise on a dev console.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
