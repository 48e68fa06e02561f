"""Every error Dovecote raises, under one root: ``except DovecoteError`` catches them all.

Each class also keeps the built-in base a caller would expect (a bad setting is a
``ValueError``, a refused bus operation a ``RuntimeError``), so narrower ``except`` clauses
keep working. Tools and services derive their own errors from these.
"""

from __future__ import annotations


class DovecoteError(Exception):
    """The root of every error raised by the library, its tools and its test plugin."""


class ConfigError(DovecoteError, ValueError):
    """A setting in the environment is missing or malformed; ``str()`` says which."""


class TopicError(DovecoteError, ValueError):
    """A topic or topic parameter that breaks the namespace rules, or a publish the registry
    does not allow (wrong publisher)."""


class InvalidActivity(DovecoteError, ValueError):
    """A payload that is not an acceptable activity for its topic; ``str()`` is the reason."""


class BusError(DovecoteError, RuntimeError):
    """The bus refused an operation (queue full, not started, disconnected, ...)."""


class Unprocessable(DovecoteError):
    """Raised by a handler for a message that no retry can fix; ``str()`` is the reason.

    The runtime parks the message on the service's dead-letter topic at once, unretried.
    """


class InvalidLetter(DovecoteError, ValueError):
    """A dead letter that cannot be sent back as it is (cut short, damaged, foreign)."""


class StoreUnavailable(DovecoteError, RuntimeError):
    """A store's database cannot be reached now (down, restarting, locked past its timeout).

    Nothing was stored. The runtime keeps the message unacknowledged and tries its handler
    again until the database is back; the gateway answers 503 with Retry-After.
    """
