"""A peer for the consume bench: FastStream's MQTT subscriber on the same backlog.

FastStream (``faststream[mqtt]``, its own zmqtt client underneath) is the best-known Python
framework for typed message handlers. Here it gets the work a Dovecote worker does: a
persistent MQTT 3.1.1 session, QoS 1, each payload validated into a typed model (pydantic,
FastStream's own way) of the same build update, and the acknowledgement sent after the
handler (``AckPolicy.ACK``). It is a bench-only dependency (in the ``dev`` extra).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

from faststream import AckPolicy
from faststream.mqtt import MQTTBroker, QoS
from pydantic import BaseModel, ConfigDict, Field

from dovecote.config import parse_mqtt_url

IRI = r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$"


class Actor(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str = Field(pattern=IRI, max_length=2048)
    type: Literal["Person", "Service", "Application", "Group", "Organization"]
    name: str | None = Field(default=None, max_length=200)


class Build(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["Build"]
    id: str = Field(pattern=IRI, max_length=2048)
    name: str = Field(max_length=200)
    state: Literal["running", "succeeded", "failed", "stopped"]
    progress: int = Field(ge=0, le=100)
    startTime: datetime | None = None
    worker: str | None = Field(default=None, max_length=200)


class BuildUpdated(BaseModel):
    """The same checks as Dovecote's ``BuildUpdated`` for this payload."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    context_: str | list[Any] = Field(alias="@context")
    id: str = Field(pattern=IRI, max_length=2048)
    type: Literal["Update"]
    actor: Actor
    object: Build
    published: datetime
    context: str | None = Field(default=None, max_length=200)


async def consume(
    url: str, client_id: str, topic: str, tick: Callable[[], None]
) -> Callable[[], Awaitable[None]]:
    """Connect as ``client_id`` (a persistent session subscribed to ``topic``) and call
    ``tick`` for every validated message; returns how to stop."""
    b = parse_mqtt_url(url)
    broker = MQTTBroker(
        host=b.host,
        port=b.port,
        client_id=client_id,
        clean_session=False,
        version="3.1.1",
        logger=None,
    )

    @broker.subscriber(topic, qos=QoS.AT_LEAST_ONCE, ack_policy=AckPolicy.ACK)
    async def handle(update: BuildUpdated) -> None:
        tick()

    await broker.start()
    return broker.stop
