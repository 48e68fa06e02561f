"""Thumbnails with Pillow: pure, bytes in, re-encoded bytes out.

Fast on purpose (the upload -> thumbnail goal is 200 ms for a 2 MP photo): a JPEG is
decoded in draft mode, i.e. by libjpeg at 1/2, 1/4 or 1/8 scale, no larger than the
biggest thumbnail needs; each smaller thumbnail is made from the next larger one. EXIF
orientation is applied, then dropped with the rest of the metadata: a thumbnail is its
pixels and, if the original had one, its ICC colour profile; nothing else of the original
(no EXIF, XMP or comment; the gateway strips what it stores again, services/gateway/
metadata.py).

What an image costs is known from its header, before a pixel is decoded (``measure``): the
pixels it decodes to after that reduction, at 4 bytes each (Pillow keeps RGB and RGBA
pixels in 4 bytes). A PNG has no reduced decoding, so a 131 KB PNG of 6300x6300 decodes to
159 MB and costs ~1.3 CPU-s: ``max_decoded`` refuses it from its header, and the resizer
runs what is under the cap but large in a lane of its own (services/resizer/service.py).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from services.gateway import topics as gateway_topics

FORMATS = ["JPEG", "PNG", "GIF", "WEBP"]


BYTES_PER_PIXEL = 4  # Pillow's storage of RGB, RGBA (and of their conversions here)


class NotAnImage(ValueError):
    """The bytes are not an image we can thumbnail; ``str()`` says why."""


@dataclass(frozen=True)
class Thumb:
    size: int  # the bound of the longer side it was made for
    width: int
    height: int
    media_type: gateway_topics.ImageMediaType
    data: bytes


def draft_target(width: int, height: int, longest: int) -> tuple[int, int]:
    """The smallest decoded size that still gives a ``longest``-px thumbnail its pixels."""
    scale = longest / max(width, height)
    return max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))


def estimate(width: int, height: int, media_type: str, longest: int) -> int:
    """The bytes an image of that size and type decodes to here, before its bytes are
    fetched (libjpeg's scales are 1/1, 1/2, 1/4 and 1/8; other formats decode whole)."""
    scale = 1
    if media_type == "image/jpeg":
        tw, th = draft_target(width, height, longest)
        while scale < 8 and width // (scale * 2) >= tw and height // (scale * 2) >= th:
            scale *= 2
    return math.ceil(width / scale) * math.ceil(height / scale) * BYTES_PER_PIXEL


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise NotAnImage(f"not an image, or not one of {', '.join(FORMATS)}") from None


def _reduce(src: Image.Image, sizes: list[int], max_pixels: int, max_decoded: int) -> int:
    """Check the header, set the reduced decoding; the bytes the decoded pixels will take."""
    w, h = src.size
    if w * h > max_pixels:
        raise NotAnImage(f"{w}x{h} is over the {max_pixels:,}-pixel limit")
    src.draft("RGB", draft_target(w, h, max(sizes)))  # JPEG only: decoded at 1/2 .. 1/8
    cost = src.width * src.height * BYTES_PER_PIXEL
    if cost > max_decoded:
        raise NotAnImage(
            f"{w}x{h} {src.format} decodes to {cost / 2**20:,.0f} MiB, over the "
            f"{max_decoded / 2**20:,.0f} MiB decoding limit (IMAGE_MAX_DECODED_BYTES)"
        )
    return cost


def measure(data: bytes, sizes: list[int], max_pixels: int, max_decoded: int) -> int:
    """The bytes ``make`` will decode ``data`` to, read from the header alone (no pixel is
    decoded: microseconds); ``NotAnImage`` if that is over a limit or it is no image."""
    try:
        with _open(data) as src:
            return _reduce(src, sizes, max_pixels, max_decoded)
    except NotAnImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NotAnImage(f"decompression bomb refused: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise NotAnImage(f"the image is damaged or truncated: {exc}") from None


def make(data: bytes, sizes: list[int], max_pixels: int, max_decoded: int) -> list[Thumb]:
    """One thumbnail per size (longer side <= size, aspect kept, never enlarged)."""
    try:
        with _open(data) as src:
            _reduce(src, sizes, max_pixels, max_decoded)
            src.load()
            image = ImageOps.exif_transpose(src)
            icc = rgb_profile(src.info.get("icc_profile"))
    except NotAnImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NotAnImage(f"decompression bomb refused: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise NotAnImage(f"the image is damaged or truncated: {exc}") from None

    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    mode = "RGBA" if alpha else "RGB"
    if image.mode != mode:
        image = image.convert(mode)
    # Nothing of the original's metadata travels with its pixels: Pillow copies ``info``
    # to every image made from another, and its JPEG encoder writes ``info["comment"]``
    # (a JPEG's COM, a GIF's comment) into what it saves (issue 21).
    image.info = {}
    thumbs: list[Thumb] = []
    for size in sorted(sizes, reverse=True):
        # resize() makes a new, small image (reducing by whole factors first): no full-size
        # copy of the decoded original is ever made.
        target = _fit(image.size, size)
        if target != image.size:
            image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        thumbs.append(_encode(image, size, alpha, icc))
    return thumbs[::-1]


def rgb_profile(icc: bytes | None) -> bytes | None:
    """The original's ICC profile if it describes RGB, as a thumbnail is: a CMYK or grey
    original's would misdescribe the thumbnail's pixels (bytes 16-19: its colour space)."""
    return icc if icc and icc[16:20] == b"RGB " else None


def _fit(size: tuple[int, int], bound: int) -> tuple[int, int]:
    """``size`` shrunk (never enlarged) so that its longer side is at most ``bound``."""
    w, h = size
    if max(w, h) <= bound:
        return w, h
    scale = bound / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _encode(image: Image.Image, size: int, alpha: bool, icc: bytes | None) -> Thumb:
    """``image`` encoded with nothing but its pixels and, when the original had an RGB one,
    its ICC colour profile (its colours are the original's)."""
    out = io.BytesIO()
    media: gateway_topics.ImageMediaType
    colour = {"icc_profile": icc} if icc else {}
    if alpha:
        # WebP keeps transparency; at method 4 it costs ~10 ms more than JPEG, only here.
        image.save(out, "WEBP", quality=80, method=4, **colour)
        media = "image/webp"
    else:
        image.save(out, "JPEG", quality=82, progressive=False, **colour)
        media = "image/jpeg"
    return Thumb(size, image.width, image.height, media, out.getvalue())
