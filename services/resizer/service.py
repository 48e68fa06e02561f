"""Resizer handlers: an uploaded image in, thumbnails stored and announced.

| listens to           | publishes            |
|----------------------|----------------------|
| events/image/created | events/image/resized |

The image's bytes never travel on the bus: the resizer GETs the original by its URL and
PUTs each thumbnail to ``<url>/thumbnails/<size>`` with the service credential, so any
resizer worker on any machine can do any image (the gateway keeps the bytes, in files or
in the shared database). A URL outside the gateway, a 4xx, or bytes that are not an image
are ``Unprocessable``: the message is dead-lettered at once with the reason and the resizer
goes on. A gateway that still answers 503 with ``Retry-After`` after the retries (its
database is down, say) makes the handler raise ``StoreUnavailable``: the message waits,
unacknowledged, until the gateway serves again; it is never parked for that.

Decoding is budgeted (issue 11): an image whose decoded pixels would take more than
``IMAGE_MAX_DECODED_BYTES`` is refused from its header, unread; one under that but over
``LIGHT_BYTES`` (a big PNG; any JPEG is decoded reduced, so photos are light) waits for the
one heavy lane, so a batch of large images costs one decode at a time and never holds up
the photos behind it, which have ``RESIZER_THREADS`` lanes of their own.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from dovecote import Bus, Delivery, Service, Unprocessable, handles
from dovecote import activity as act
from dovecote.config import ConfigError, Settings
from dovecote.errors import StoreUnavailable
from dovecote.resources import Resources, Transient
from services.gateway import topics as gateway_topics
from services.resizer import thumbnails
from services.resizer import topics as resizer_topics

# ~4 Mpx decoded: a 2 MP photo is 8 MiB, a 24 MP JPEG decoded at 1/8 under 2 MiB.
LIGHT_BYTES = 16 * 2**20


def parse_sizes(raw: str) -> list[int]:
    """``"128,512"`` -> [128, 512]."""
    try:
        sizes = sorted({int(part) for part in raw.split(",") if part.strip()})
    except ValueError:
        raise ConfigError(f"THUMBNAIL_SIZES must be numbers like 128,512, got {raw!r}") from None
    if not sizes or len(sizes) > 8 or not all(16 <= s <= 4096 for s in sizes):
        raise ConfigError(f"THUMBNAIL_SIZES: 1-8 sizes of 16-4096 px, got {raw!r}")
    return sizes


class Resizer(Service):
    name = "resizer"

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        self.sizes = parse_sizes(settings.get_str("THUMBNAIL_SIZES", "128,512"))
        self.max_bytes = settings.get_int("IMAGE_MAX_BYTES", 10 * 1024 * 1024, 1024, 1024**3)
        self.max_pixels = settings.get_int("IMAGE_MAX_PIXELS", 40_000_000, 1, 1_000_000_000)
        self.max_decoded = settings.get_int(
            "IMAGE_MAX_DECODED_BYTES", 96 * 2**20, LIGHT_BYTES, 2**40
        )
        token = settings.env.get("DOVECOTE_SERVICE_TOKEN", "").strip()
        if not token:
            raise ConfigError(
                "DOVECOTE_SERVICE_TOKEN is not set: the gateway accepts thumbnails only with "
                "it (`make run` makes one for the whole federation)"
            )
        self.gateway = Resources(settings.public_url, token)
        # Pillow's own bound, behind the explicit check in thumbnails.make.
        Image.MAX_IMAGE_PIXELS = self.max_pixels
        # Decoding and resizing take ~15 ms for a 2 MP JPEG: on the event loop that would
        # hold up MQTT acks and the next message. Pillow releases the GIL while it works,
        # so threads also resize two images at once on two cores.
        workers = settings.get_int("RESIZER_THREADS", os.cpu_count() or 2, 1, 64)
        self.pool = ThreadPoolExecutor(max_workers=workers + 1, thread_name_prefix="resize")
        # Each lane bounds the originals held in memory and the images decoded at once.
        self.light = asyncio.Semaphore(workers)
        self.heavy = asyncio.Semaphore(1)

    async def setup(self) -> None:
        await self.gateway.open()

    async def teardown(self) -> None:
        await self.gateway.close()
        self.pool.shutdown(wait=True)

    async def _make(self, data: bytes) -> list[thumbnails.Thumb]:
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, thumbnails.make, data, self.sizes, self.max_pixels, self.max_decoded
        )

    @handles(gateway_topics.IMAGE_CREATED)
    async def on_image_created(self, activity: gateway_topics.ImageCreated, _: Delivery) -> None:
        try:
            await self._resize(activity)
        except Transient as exc:
            if exc.come_back:
                raise StoreUnavailable(f"the gateway asks to come back: {exc}") from None
            raise

    async def _resize(self, activity: gateway_topics.ImageCreated) -> None:
        image = activity.object
        longest = max(self.sizes)
        claimed = thumbnails.estimate(image.width, image.height, image.mediaType, longest)
        lane = self.light if claimed <= LIGHT_BYTES else self.heavy
        async with lane:
            started = time.perf_counter()
            data, _type = await self.gateway.get_bytes(image.url, self.max_bytes)
            fetched = time.perf_counter()
            try:  # the header, not the event, says what decoding costs
                cost = thumbnails.measure(data, self.sizes, self.max_pixels, self.max_decoded)
                if cost > LIGHT_BYTES and lane is self.light:
                    async with self.heavy:  # larger than its event said
                        thumbs = await self._make(data)
                else:
                    thumbs = await self._make(data)
            except thumbnails.NotAnImage as exc:
                raise Unprocessable(f"{image.url}: {exc}") from None
            resized = time.perf_counter()
        previews = [
            resizer_topics.Thumbnail(
                type="Link",
                href=f"{image.url}/thumbnails/{t.size}",
                mediaType=t.media_type,
                width=t.width,
                height=t.height,
            )
            for t in thumbs
        ]
        await asyncio.gather(
            *(
                self.gateway.put(f"{image.url}/thumbnails/{t.size}", t.data, t.media_type)
                for t in thumbs
            )
        )
        update = resizer_topics.ImageResized(
            **act.envelope(act.derived_id(activity.id, "resized")),  # once, however often
            type="Update",
            actor=self.bus.actor,
            object=resizer_topics.ResizedImage(
                type="Image", id=image.id, url=image.url, name=image.name, preview=previews
            ),
            context=activity.context,
        )
        self.bus.publish(resizer_topics.IMAGE_RESIZED, update)
        self.log.info(
            "resized %s (%dx%d) to %s: fetch %.0f ms, resize %.0f ms, store %.0f ms [context=%s]",
            image.url,
            image.width,
            image.height,
            ", ".join(f"{t.width}x{t.height}" for t in thumbs),
            (fetched - started) * 1000,
            (resized - fetched) * 1000,
            (time.perf_counter() - resized) * 1000,
            activity.context,
        )
