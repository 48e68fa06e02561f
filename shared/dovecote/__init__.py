"""Dovecote: small Python services that talk only through an MQTT broker, in Activity
Streams 2.0.

A service is a class with decorated handlers::

    from dovecote import Delivery, Service, handles, run
    from services.gateway import topics as gateway_topics  # the publisher's contract

    class Tweeter(Service):
        name = "tweeter"

        @handles(gateway_topics.IMAGE_CREATED)
        async def on_image(self, created: gateway_topics.ImageCreated, _: Delivery) -> None: ...

    run(Tweeter)  # the whole __main__.py

The runtime is ``service`` (what a service is), ``worker`` (its lifecycle), ``dispatch``
(one message's path), ``letters`` (dead letters as data), ``mqtt`` (paho on asyncio),
``topics`` (the registry, and the runtime's own topics), ``activity`` (the AS2 model, the
runtime's payloads from ``payloads/``, the codec) and ``federation`` (what a manifest
names). A federation's own topics and payloads are its services' (each one's
``topics.py``), never the library's. ``dovecote.tools`` holds the
``dovecote`` command; ``dovecote_testing`` the pytest plugin.
"""

from __future__ import annotations

from dovecote import activity, topics
from dovecote.config import Settings
from dovecote.errors import DovecoteError, Unprocessable
from dovecote.service import Bus, Delivery, Service, handles
from dovecote.worker import run

__all__ = [
    "Bus",
    "Delivery",
    "DovecoteError",
    "Service",
    "Settings",
    "Unprocessable",
    "activity",
    "handles",
    "run",
    "topics",
]
