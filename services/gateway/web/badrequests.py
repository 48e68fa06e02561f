"""A request the client got wrong is the client's problem: one warning line, no traceback.

aiohttp answers a malformed request (a bad header token, a line over 8 KiB, a broken
chunked body) with a 400, then logs it on ``aiohttp.server`` at ERROR with the whole
traceback; so does a body cut short by a client that went away. Anyone could fill the
gateway's log with tracebacks that hide the real ones (found by tests/test_fuzz.py). Real
failures (a handler's exception, a 500) stay ERROR with their traceback.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

SERVER_LOGGER = "aiohttp.server"


class ClientFaults(logging.Filter):
    """Turns aiohttp's record of a client's fault into one warning line with the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        client_fault = isinstance(exc, ConnectionResetError) or (
            isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500
        )
        if client_fault:
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            said = record.getMessage().replace("Error handling request", "refused a bad request")
            record.msg, record.args = "%s: %s", (said, reason)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_client_faults() -> None:
    """Install the filter on aiohttp's server logger (once per process is enough)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, ClientFaults) for f in logger.filters):
        logger.addFilter(ClientFaults())
