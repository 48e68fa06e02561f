"""Logging set-up: one line per event, to stderr, level from LOG_LEVEL.

The supervisor prefixes each line with the worker's name (``builder.1 |``), so a service
itself prints no name of its own beyond the logger's.
"""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
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
