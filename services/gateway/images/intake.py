"""An image's way in, an upload's or a thumbnail's: the bytes stored, and their facts.

1. Its container is read by the gateway's own parsers (``metadata.strip``): the format
   from its first bytes (415 for anything but JPEG, PNG, GIF and WebP), its size from its
   header, its metadata taken out; a damaged structure is a 400. No pixel is decoded.
2. Its limits, from that header alone (``checks.check_limits``): 413.
3. Pillow proves the stripped file decodes, and a PNG or WebP is turned upright if its
   EXIF said so, inside the gateway's one decoding budget (``budget.py``): Pillow never
   sees the metadata, nor decodes more than the budget at once, all requests together.
"""

from __future__ import annotations

import asyncio

from services.gateway.context import Images
from services.gateway.images import checks as img
from services.gateway.images import metadata
from services.gateway.images.containers.base import Stripped

TURNED_SIDEWAYS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


async def accept(images: Images, data: bytes, max_pixels: int) -> tuple[bytes, img.ImageInfo]:
    """The bytes to store for ``data`` and their facts; ``checks.BadImage`` when refused."""
    loop = asyncio.get_running_loop()
    found = await loop.run_in_executor(images.pool, checked, data, max_pixels, images.max_decoded)
    cost = found.decode_bytes + metadata.turning_bytes(found)
    stored = await images.budget.run(images.pool, cost, decoded, found)
    return stored.data, info_of(stored)


def checked(data: bytes, max_pixels: int, max_decoded: int) -> Stripped:
    """Steps 1 and 2: ``data`` stripped, and within its limits. No pixel decoded."""
    found = metadata.strip(data)
    kind = img.PILLOW_NAMES[found.media_type]
    img.check_limits(kind, found.width, found.height, found.pixel_bytes, max_pixels, max_decoded)
    return found


def decoded(found: Stripped) -> Stripped:
    """Step 3, in an image thread, within the budget: proven, and turned upright if it must be."""
    img.prove(found.data, found.media_type, found.width, found.height)
    return metadata.turned(found) if metadata.needs_turning(found) else found


def info_of(stored: Stripped) -> img.ImageInfo:
    """Its facts as it is shown: a JPEG that its orientation turns sideways is as wide as
    it is shown, not as its pixels are stored."""
    width, height = stored.width, stored.height
    if stored.orientation_kept and stored.orientation in TURNED_SIDEWAYS:
        width, height = height, width
    return img.ImageInfo(stored.media_type, width, height, len(stored.data))
