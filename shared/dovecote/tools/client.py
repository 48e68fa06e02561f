"""A short-lived bus client for command-line tools (``dovecote tail``, ``dovecote publish``).

Services keep reconnecting forever; a person at a terminal wants to hear at once that the
broker is not there. This connects with a clean session and a throwaway client id, and
gives up after a timeout with the broker's (redacted) address in the message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from dovecote.config import Settings
from dovecote.errors import DovecoteError
from dovecote.mqtt import Connection, Message


class Unreachable(DovecoteError, RuntimeError):
    """The broker did not accept a connection in time; ``str()`` says where we tried."""


async def connect(
    settings: Settings,
    tool: str,
    on_message: Callable[[Message], None] = lambda _: None,
    timeout: float = 10.0,
) -> Connection:
    conn = Connection(
        settings.broker,
        f"{settings.root}-{tool}-{uuid.uuid4().hex[:8]}",
        on_message=on_message,
        clean_session=True,
        manual_ack=False,
    )
    conn.start()
    try:
        await conn.wait_connected(timeout)
    except TimeoutError:
        await conn.stop(1)
        raise Unreachable(
            f"cannot reach the broker at {settings.broker.redacted()} within {timeout:g} s "
            "(set MQTT_URL, or start one with `dovecote run`)"
        ) from None
    return conn
