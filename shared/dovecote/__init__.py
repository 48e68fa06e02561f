"""Dovecote: small Python services that talk only through an MQTT broker, in Activity
Streams 2.0.

A service is a class with decorated handlers::

    from dovecote import Delivery, Service, activity, handles, run, topics

    class Tweeter(Service):
        name = "tweeter"

        @handles(topics.IMAGE_CREATED)
        async def on_image(self, created: activity.ImageCreated, _: Delivery) -> None: ...

    run(Tweeter)  # the whole __main__.py

The runtime is ``service`` (what a service is), ``worker`` (its lifecycle), ``dispatch``
(one message's path), ``letters`` (dead letters as data), ``mqtt`` (paho on asyncio),
``topics`` (the registry) and ``activity`` (the AS2 model). ``dovecote.tools`` holds the
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
