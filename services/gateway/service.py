"""Gateway handlers: what browsers may see, forwarded as the bytes the broker sent.

| listens to                                   | publishes                         |
|----------------------------------------------|-----------------------------------|
| events/# (every event, also of new services) | commands/builder/start, stop      |
| state/* (retained, topic by topic)           | events/image/created (on upload)  |
| services/+/+ (presence, retained)            |                                   |
| users/+/notifications (to that user only)    |                                   |

Commands, dead letters and other users' notifications never reach a browser.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from dovecote import Bus, Delivery, Service, handles, topics
from dovecote import activity as act
from dovecote.config import Settings
from services.gateway import images
from services.gateway.badrequests import quiet_client_faults
from services.gateway.context import Context, Images
from services.gateway.hub import REPLAY_BYTES, Hub
from services.gateway.store import ImageStore
from services.gateway.users import Directory
from services.gateway.web import create_app

# Retained state is subscribed topic by topic: RabbitMQ delivers retained messages only
# to exact-topic subscriptions (docs/brokers.md).
STATE_TOPICS = [t for t in topics.all_topics() if t.kind == "state" and not t.params]


class Gateway(Service):
    name = "gateway"
    eager_handlers = True  # forwarding bytes never awaits: no Task per message
    # Browsers rebuild everything from retained state on reconnect: a gateway that was down
    # has no use for a backlog of stale events, so its session is clean.
    clean_session = True
    # An upload answered 201 and a command answered 202 are promises made to a browser:
    # their events go through a durable outbox, so a crash before the broker's PUBACK (a
    # broker outage, a kill -9) cannot lose them. Bounded: when full, the gateway says 503.
    outbox = True

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        # Bytes of recent frames held for pages that reconnect (0: no page ever resumes).
        self.hub = Hub(settings.get_int("GATEWAY_REPLAY_BYTES", REPLAY_BYTES, 0, 1024**3))
        self.directory = Directory.load(settings.env.get("USERS_FILE"), settings.public_url)
        self.runner: web.AppRunner | None = None
        self.pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="img")
        max_pixels = settings.get_int("IMAGE_MAX_PIXELS", 40_000_000, 1, 1_000_000_000)
        images.bound_pillow(max_pixels)
        self.images = Images(
            store=ImageStore(
                Path(settings.get_str("IMAGES_DIR", str(settings.data_dir / "images")))
            ),
            public_url=settings.public_url,
            max_bytes=settings.get_int("IMAGE_MAX_BYTES", 10 * 1024 * 1024, 1024, 1024**3),
            max_pixels=max_pixels,
            max_decoded=settings.get_int(
                "IMAGE_MAX_DECODED_BYTES", images.DEFAULT_MAX_DECODED, 2**20, 2**40
            ),
            service_token=settings.env.get("DOVECOTE_SERVICE_TOKEN", "").strip() or None,
            pool=self.pool,
        )

    @handles("events/#", shared=False)  # every worker serves its own browsers
    async def on_event(self, _: act.Activity, delivery: Delivery) -> None:
        self.hub.broadcast(delivery.topic, delivery.payload)

    @handles(*STATE_TOPICS, topics.PRESENCE, shared=False)
    async def on_state(self, _: act.Activity, delivery: Delivery) -> None:
        self.hub.broadcast(delivery.topic, delivery.payload, retain=True)

    @handles(topics.NOTIFICATION, shared=False)  # every gateway worker: each has its sockets
    async def on_notification(self, _: act.Notification, delivery: Delivery) -> None:
        # The topic names the one person it is for: only that person's sockets get it.
        self.hub.send_to_user(delivery.params["user"], delivery.topic, delivery.payload)

    async def setup(self) -> None:
        self.images.store.open()
        if self.images.service_token is None:
            self.log.warning("DOVECOTE_SERVICE_TOKEN is not set: thumbnail uploads are refused")
        quiet_client_faults()
        ctx = Context(self.hub, self.directory, self._publish, self.bus.root, self.images)
        self.runner = web.AppRunner(create_app(ctx), access_log=None, handle_signals=False)
        await self.runner.setup()
        # reuse_port: several gateway workers can serve one port (SO_REUSEPORT).
        site = web.TCPSite(self.runner, self.settings.host, self.settings.port, reuse_port=True)
        await site.start()
        logging.getLogger("dovecote.gateway").info(
            "dashboard at %s/ (listening on %s:%d)",
            self.settings.public_url,
            self.settings.host,
            self.settings.port,
        )

    def _publish(self, entry: topics.Topic, activity: dict[str, object]) -> None:
        self.bus.publish(entry, activity, durable=True)

    async def teardown(self) -> None:
        await self.hub.close_all()
        if self.runner is not None:
            await self.runner.cleanup()
        self.pool.shutdown(wait=True)
