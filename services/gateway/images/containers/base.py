"""What a container parser gives back, and how it refuses a file."""

from __future__ import annotations

from dataclasses import dataclass

from services.gateway import topics as gateway_topics
from services.gateway.images.checks import BadImage

# Pillow keeps RGB and RGBA pixels in 4 bytes: the unit of IMAGE_MAX_DECODED_BYTES.
BYTES_PER_PIXEL = 4
# Segments, chunks or blocks a file may have. A photo has tens, a long animation a few
# thousand; 10 MB of empty ones would cost seconds of CPU to walk (5 s for 2.6 million
# empty JPEG comments), this many about a tenth of a second.
MAX_PARTS = 100_000


@dataclass(frozen=True)
class Stripped:
    """A file without its metadata, and what its headers say about it."""

    media_type: gateway_topics.ImageMediaType
    data: bytes  # the file as stored: the pixels' bytes as uploaded, metadata out
    width: int  # as the pixels are stored, before any orientation
    height: int
    # The decoded pixels at 4 bytes each, at the scale the gateway decodes them (a JPEG at
    # 1/8): what IMAGE_MAX_DECODED_BYTES bounds, as the resizer counts it too.
    pixel_bytes: int
    # What decoding it takes here, measured (tests/test_images_memory.py): the pixels,
    # plus a progressive JPEG's coefficients, plus WebP's decoder canvases.
    decode_bytes: int
    orientation: int = 1  # the EXIF orientation it came with (1: upright, or none)
    orientation_kept: bool = False  # True: the stored file still says it (a JPEG)
    animated: bool = False
    lossless: bool = False  # a WebP whose pixels are VP8L (lossless)

    @property
    def pixels(self) -> int:
        return self.width * self.height


def damaged(kind: str, what: str) -> BadImage:
    """400: the file's structure is broken; says what and where."""
    return BadImage(f"the {kind} is damaged or truncated: {what}")


def too_many(kind: str, parts: str) -> BadImage:
    """400: a file made of more parts than any image has (walking them would cost seconds)."""
    return BadImage(f"the {kind} has over {MAX_PARTS:,} {parts}: no image is made like that")


def unsupported(kind: str, what: str) -> BadImage:
    """415: a valid file of a kind browsers do not show."""
    return BadImage(f"this {kind} is not one browsers show: {what}", 415)
