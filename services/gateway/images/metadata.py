"""Stored images without metadata: what an upload (and a thumbnail) keeps, and what it loses.

A phone photo carries where it was taken (the EXIF GPS block, often XMP too), who took it
(serial numbers, the owner's name, maker notes) and when (dates, a time-zone offset). A
stored image is public, so every one is stored with none of that. The metadata is taken
out of the file's container (``containers/``): nothing is decoded to do it, and the bytes
that hold the pixels are stored exactly as uploaded. What stays is what shows the pixels:

- what decodes them: JPEG frame header, tables and scans; PNG IHDR, PLTE, IDAT, IEND;
  GIF screen, colour tables and images; WebP VP8/VP8L, ALPH and VP8X (its flags fixed);
- how their colours show: the ICC colour profile (JPEG APP2; PNG iCCP, its free-text name
  replaced; WebP ICCP; GIF ICCRGBG1012), PNG tRNS, gAMA, cHRM, sRGB, cICP, mDCv, cLLI,
  the JFIF header (its density; its thumbnail dropped) and Adobe's APP14 colour transform;
- an animation: PNG acTL, fcTL, fdAT; WebP ANIM and ANMF; GIF graphic control extensions
  and the loop count of NETSCAPE2.0 (its other sub-blocks dropped);
- a JPEG's EXIF orientation, as an EXIF block that says nothing else (32 bytes): browsers
  turn a JPEG by it (CSS ``image-orientation: from-image``, their default), and so does the
  resizer when it makes thumbnails, so the original is not decoded to turn it.

Everything else goes: all other EXIF (the GPS block, camera, lens and serial numbers, the
owner's name, dates and offsets, maker notes, embedded thumbnails), XMP, IPTC/Photoshop
(APP13), every other APPn (MPF, FlashPix, ...), comments (JPEG COM, GIF comment), PNG
text (tEXt, zTXt, iTXt), eXIf, tIME, bKGD, pHYs and private chunks, GIF plain text and
application extensions (XMP among them), WebP EXIF, XMP and unknown chunks, and every
byte after the image's end (MPF's second images, an appended page).

A PNG's or a still WebP's EXIF orientation is applied to the pixels instead (no browser
turns a WebP by it, and not all a PNG): the one case where the gateway decodes and encodes
again, inside its decoding budget: a PNG losslessly, a WebP losslessly if it was, else at
quality 90. An animated PNG or WebP keeps its frames as they are and loses the tag.

Pure: bytes in, bytes out; the gateway runs it in its image threads.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from services.gateway.images.checks import FORMATS, BadImage
from services.gateway.images.containers import gif, jpeg, png, webp
from services.gateway.images.containers.base import BYTES_PER_PIXEL, Stripped

# What turns the pixels as each EXIF orientation says (as Pillow's ImageOps.exif_transpose).
TURNS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
FORMAT_NAMES = {"image/png": "PNG", "image/webp": "WEBP"}
# Memory for turning, beyond decoding (measured): the turned copy, and the encoder's own
# (libwebp's lossless encoder takes ~22 bytes a pixel, its lossy one ~2).
TURNING_BYTES_PER_PIXEL = {"image/png": BYTES_PER_PIXEL, "image/webp": BYTES_PER_PIXEL + 4}
LOSSLESS_WEBP_BYTES_PER_PIXEL = BYTES_PER_PIXEL + 22


def strip(data: bytes) -> Stripped:
    """``data`` without its metadata, and what its headers say. ``BadImage``: 415 if it is
    not one of the four formats (or a kind of one no browser shows), 400 if it is damaged."""
    if not data:
        raise BadImage("the file is empty")
    if data.startswith(b"\xff\xd8\xff"):
        return jpeg.strip(data)
    if data.startswith(png.SIGNATURE):
        return png.strip(data)
    if data.startswith((b"GIF87a", b"GIF89a")):
        return gif.strip(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return webp.strip(data)
    raise BadImage(f"not an image, or not one of {', '.join(sorted(FORMATS))}", 415)


def needs_turning(found: Stripped) -> bool:
    """A still PNG or WebP whose EXIF orientation was dropped: its pixels are turned."""
    return found.orientation != 1 and not found.orientation_kept and not found.animated


def turning_bytes(found: Stripped) -> int:
    """What ``turned`` takes beyond decoding ``found``."""
    if not needs_turning(found):
        return 0
    if found.media_type == "image/webp" and found.lossless:
        return found.pixels * LOSSLESS_WEBP_BYTES_PER_PIXEL
    return found.pixels * TURNING_BYTES_PER_PIXEL[found.media_type]


def turned(found: Stripped) -> Stripped:
    """``found`` with its orientation applied to the pixels, encoded again, stripped again."""
    fmt = FORMAT_NAMES[found.media_type]
    with Image.open(io.BytesIO(found.data), formats=[fmt]) as img:
        img.load()
        upright = img.transpose(TURNS[found.orientation])
    options: dict[str, Any] = {}
    if icc := upright.info.get("icc_profile"):
        options["icc_profile"] = icc
    if fmt == "WEBP" and found.lossless:
        options["lossless"] = True
    elif fmt == "WEBP":
        options["quality"] = 90
    out = io.BytesIO()
    upright.save(out, fmt, **options)
    return strip(out.getvalue())
