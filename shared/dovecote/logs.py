"""Logging set-up: one line per event, to stderr, level from LOG_LEVEL, format from LOG_FORMAT.

``text`` (the default) is for a person: the supervisor prefixes each line with the worker's
name (``builder.1 |``), so a service prints no name of its own beyond the logger's.

``json`` is for a machine (journald, a log shipper): one JSON object per line with
``time`` (RFC 3339, UTC), ``service``, ``instance``, ``level``, ``logger``, ``message`` and
``context``, the correlation id of the work the line is about. A log call names it with
``[context=...]`` at the end of its message, the project's convention (the text format
shows it as it is), or with ``extra={"context": ...}``; the JSON format moves it out of
the message into its own field. A traceback goes in ``error``.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

import orjson

_CONTEXT = re.compile(r"\s*\[context=([^\]\s]*)\]\s*$")


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


def setup_logging(
    level: str = "INFO", fmt: str = "text", service: str = "", instance: str = ""
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp logs every request at INFO: useful behind a proxy, noise on a dev console.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
