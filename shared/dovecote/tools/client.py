"""A short-lived bus client for command-line tools (``dovecote tail``, ``dovecote publish``).

Services keep reconnecting forever; a person at a terminal wants to hear at once that the
broker is not there. This connects with a clean session and a throwaway client id, and
gives up after a timeout with the broker's (redacted) address in the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Callable
from typing import Any

from dovecote import activity as act
from dovecote.config import Settings
from dovecote.errors import DovecoteError
from dovecote.mqtt import Connection, Message
from dovecote.topics import P, Topic

# The tools' client ids are <root>-<login>-<tool>-<8 hex digits> when MQTT_URL names a login
# (<root>-<tool>-<8 hex digits> without one), or MQTT_CLIENT_ID: the RabbitMQ permissions
# let the observer and the operator each use their own ids' session queues only, so neither
# resumes the other's session.
TOOL_IDS = ("deadletter", "publish", "tail", "trace")


def tool_client_id(settings: Settings, tool: str) -> str:
    """The client id a tool connects with (MQTT_CLIENT_ID when set: a pinned login's)."""
    login = (settings.broker.username or "").rpartition(":")[2]  # RabbitMQ: "<vhost>:<user>"
    who = f"{login}-" if re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", login) else ""
    return settings.get_str("MQTT_CLIENT_ID", f"{settings.root}-{who}{tool}-{uuid.uuid4().hex[:8]}")


class Unreachable(DovecoteError, RuntimeError):
    """The broker did not accept a connection in time; ``str()`` says where we tried."""


async def connect(
    settings: Settings,
    tool: str,
    on_message: Callable[[Message], None] = lambda _: None,
    timeout: float = 10.0,
) -> Connection:
    # A login pinned to one client id (Mosquitto's dynamic security: docs/deploying.md)
    # connects with that one.
    client_id = tool_client_id(settings, tool)
    conn = Connection(
        settings.broker,
        client_id,
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


async def request(
    settings: Settings,
    tool: str,
    entry: Topic[P],
    command: P,
    reply: Topic[Any],
    timeout: float = 10.0,
) -> bytes | None:
    """Publish ``command`` on ``entry`` and return the payload answered for it on ``reply``
    (whose ``{request}`` is the command's id); None when no answer came within ``timeout``
    (each tool says who should have answered)."""
    key = act.request_key(command.id)
    assert key is not None, "a command's id is a urn:uuid (act.envelope)"
    reply_topic = reply.address(settings.root, request=key)
    answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_message(msg: Message) -> None:
        if msg.topic == reply_topic and not answer.done():
            answer.set_result(msg.payload)

    conn = await connect(settings, tool, on_message, timeout=timeout)
    try:
        granted = conn.subscribe(reply_topic, 1)
        if granted is not None:
            await asyncio.wait_for(granted, timeout)
        conn.publish(entry.address(settings.root), act.encode(command), entry.qos, entry.retain)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(answer, timeout)
        return None
    finally:
        await conn.stop(2)
