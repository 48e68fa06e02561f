"""What the gateway accepts as an image: its limits, and the proof that it decodes.

An upload's headers are read first, by the gateway's own parsers (``containers/``, which
also take its metadata out): ``check_limits`` refuses what is too large from them. Then
``prove`` has Pillow decode it, inside the gateway's decoding budget (``intake.py``).
Both are pure and ``prove`` is slow enough (a few ms of decoding) that the gateway runs it
in a thread: Pillow releases the GIL while it decodes, so the event loop keeps pushing
frames to browsers meanwhile.
"""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass

from PIL import Image

from services.gateway import topics as gateway_topics

# Web formats only: the ones every browser shows. Pillow tries no other decoder (TIFF,
# PSD, ...), which also keeps its rarer parsers away from untrusted bytes.
FORMATS: dict[str, gateway_topics.ImageMediaType] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
TITLE_MAX = 120


class BadImage(ValueError):
    """Bytes the gateway refuses; ``str()`` is the reason, ``status`` the HTTP answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class ImageInfo:
    media_type: gateway_topics.ImageMediaType
    width: int
    height: int
    size: int

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.media_type]


DEFAULT_MAX_DECODED = 96 * 2**20  # 6300x6300 RGB (159 MiB decoded, ~1.3 CPU-s) is over
PILLOW_NAMES = {media: name for name, media in FORMATS.items()}
DRAFT_SCALE = 8  # a JPEG is proven decoded at 1/8: libjpeg's smallest scale


def check_limits(
    kind: str, width: int, height: int, pixel_bytes: int, max_pixels: int, max_decoded: int
) -> None:
    """413 for an image too large, from what its header says, before a pixel is decoded:
    a decompression bomb (a few KB claiming 50,000 x 50,000 pixels), or one whose pixels
    would take more than ``max_decoded`` bytes (a 131 KB PNG of 6300 x 6300 is under any
    sane pixel limit, yet decodes to 151 MiB; a JPEG is decoded at 1/8 scale here, so only
    a huge one comes near it)."""
    if width * height > max_pixels:
        raise BadImage(
            f"{width}x{height} is {width * height:,} pixels, over the "
            f"{max_pixels:,}-pixel limit (decompression bomb?)",
            413,
        )
    if pixel_bytes > max_decoded:
        raise BadImage(
            f"{width}x{height} {kind} decodes to {pixel_bytes / 2**20:,.0f} MiB, over "
            f"the {max_decoded / 2**20:,.0f} MiB limit (IMAGE_MAX_DECODED_BYTES): "
            "send a JPEG or a smaller image",
            413,
        )


def prove(data: bytes, media_type: gateway_topics.ImageMediaType, width: int, height: int) -> None:
    """Pillow decodes ``data`` (a JPEG at 1/8 scale) and finds the format and size its
    header said; ``BadImage`` (400) when it does not: damaged, truncated, or a file whose
    header and image disagree. Only Pillow's decoder for that one format is tried."""
    name = PILLOW_NAMES[media_type]
    try:
        with Image.open(io.BytesIO(data), formats=[name]) as img:
            if img.size != (width, height):
                raise BadImage(
                    f"the {name} says {width}x{height} in its header, "
                    f"{img.width}x{img.height} in its image data"
                )
            img.verify()  # structure and checksums (PNG CRCs), without decoding
        with Image.open(io.BytesIO(data), formats=[name]) as img:
            # verify() does not decode JPEG data: decode it, at 1/8 scale where the
            # format allows (JPEG draft mode), so a truncated file is caught cheaply.
            img.draft("RGB", (max(1, width // DRAFT_SCALE), max(1, height // DRAFT_SCALE)))
            img.load()
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own bound (Image.MAX_IMAGE_PIXELS, see ``bound_pillow``).
        raise BadImage(f"decompression bomb refused: {exc}", 413) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # UnidentifiedImageError too
        raise BadImage(f"the image is damaged or truncated: {exc}") from None


def bound_pillow(max_pixels: int) -> None:
    """Process-wide, at start-up: Pillow itself refuses images far over ``max_pixels``.

    Defence in depth behind ``check_limits``. Pillow raises above twice its bound and warns
    between (the warning is logged once; ``prove`` then refuses the image with a 413).
    """
    Image.MAX_IMAGE_PIXELS = max_pixels


_SPACE = re.compile(r"\s+")


def title(text: str | None, fallback: str = "Untitled") -> str:
    """A display name from free text (a form field or a client's file name).

    Control and format characters (bidi overrides included) go, whitespace collapses, the
    length is bounded. The result is only ever shown as text; file names never come
    from it.
    """
    if not text:
        return fallback
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in unicodedata.normalize("NFC", text)
        if ch.isspace() or unicodedata.category(ch)[0] != "C"
    )
    cleaned = _SPACE.sub(" ", kept).strip()[:TITLE_MAX].strip()
    return cleaned or fallback


def title_from_filename(filename: str | None) -> str | None:
    """``'holiday/cat.final.JPG'`` -> ``'cat.final'``: the last path part, extension off."""
    if not filename:
        return None
    base = re.split(r"[\\/]", filename)[-1]
    stem, dot, ext = base.rpartition(".")
    return stem if dot and stem and len(ext) <= 5 else base
