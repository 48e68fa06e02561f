"""A PNG without its metadata: its chunks walked, checked and kept or dropped; no pixel decoded.

A PNG (ISO/IEC 15948, W3C PNG third edition) is a signature, then chunks: a 4-byte length
(at most 2^31 - 1), a 4-letter type, the data, a CRC-32 of type and data. Kept, byte for
byte: the critical chunks (IHDR, PLTE, IDAT, IEND), what says how the pixels show
(tRNS transparency; gAMA, cHRM, sRGB, cICP, mDCv, cLLI colour; iCCP the ICC profile, its
free-text name replaced by ``ICC profile``) and an animated PNG's frames (acTL, fcTL,
fdAT). Dropped: every other ancillary chunk: text (tEXt, zTXt, iTXt), EXIF (eXIf, whose
orientation the gateway applies to the pixels), the time (tIME), the background (bKGD),
the resolution (pHYs), any private chunk; and whatever follows IEND. A chunk whose CRC is
wrong, whose length runs past the end, or an unknown critical chunk is refused (400).
"""

from __future__ import annotations

import struct
import zlib

from services.gateway.images.containers import tiff
from services.gateway.images.containers.base import (
    BYTES_PER_PIXEL,
    MAX_PARTS,
    Stripped,
    damaged,
    too_many,
    unsupported,
)

KIND = "PNG"
SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_LENGTH = 2**31 - 1
CRITICAL = {b"IHDR", b"PLTE", b"IDAT", b"IEND"}
SHOWN = {b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"cICP", b"mDCv", b"cLLI"}
ANIMATION = {b"acTL", b"fcTL", b"fdAT"}
KEPT = CRITICAL | SHOWN | ANIMATION
ICC_NAME = b"ICC profile"


def strip(data: bytes) -> Stripped:
    if not data.startswith(SIGNATURE):
        raise damaged(KIND, "no PNG signature")
    kept = [SIGNATURE]
    width = height = 0
    orientation = 1
    animated = seen_idat = False
    pos = len(SIGNATURE)
    for _ in range(MAX_PARTS):
        kind, body, end = _chunk(data, pos)
        if pos == len(SIGNATURE):
            if kind != b"IHDR" or len(body) != 13:
                raise damaged(KIND, "its first chunk is not a 13-byte IHDR")
            width, height = struct.unpack_from(">II", body)
            if not (0 < width <= MAX_LENGTH and 0 < height <= MAX_LENGTH):
                raise damaged(KIND, f"a header of {width}x{height} pixels")
        elif kind == b"IHDR":
            raise damaged(KIND, f"a second IHDR at byte {pos}")
        if kind == b"iCCP":
            kept.append(_renamed_icc(body, pos))
        elif kind in KEPT:
            kept.append(data[pos:end])
        elif kind[0:1].isupper():  # critical (bit 5 of the first letter clear)
            raise unsupported(KIND, f"an unknown critical chunk {kind.decode()!r} at byte {pos}")
        elif kind == b"eXIf":
            orientation = tiff.orientation(body)
        seen_idat = seen_idat or kind == b"IDAT"
        if kind == b"acTL" and len(body) == 8:
            animated = struct.unpack_from(">I", body)[0] > 1
        pos = end
        if kind == b"IEND":
            break
    else:
        raise too_many(KIND, "chunks")
    if not seen_idat:
        raise damaged(KIND, "no image data (IDAT)")
    pixels = width * height * BYTES_PER_PIXEL
    return Stripped(
        media_type="image/png",
        data=b"".join(kept),
        width=width,
        height=height,
        pixel_bytes=pixels,
        decode_bytes=pixels + len(data),
        orientation=orientation,
        animated=animated,
    )


def _chunk(data: bytes, pos: int) -> tuple[bytes, bytes, int]:
    """The chunk at ``pos``: (its type, its data, where the next starts); CRC checked."""
    if pos + 8 > len(data):
        raise damaged(KIND, f"it ends at byte {len(data)} before its IEND chunk")
    length, kind = struct.unpack_from(">I4s", data, pos)
    if not kind.isalpha():
        raise damaged(KIND, f"a chunk at byte {pos} has no valid type ({kind!r})")
    name = kind.decode()
    if length > MAX_LENGTH:
        raise damaged(KIND, f"chunk {name!r} at byte {pos} claims {length:,} bytes (over 2^31)")
    end = pos + 12 + length
    if end > len(data):
        raise damaged(
            KIND,
            f"chunk {name!r} at byte {pos} claims {length:,} bytes, "
            f"{end - len(data):,} past the end of the file",
        )
    (crc,) = struct.unpack_from(">I", data, end - 4)
    if crc != zlib.crc32(memoryview(data)[pos + 4 : end - 4]):
        raise damaged(KIND, f"chunk {name!r} at byte {pos} fails its CRC check")
    return kind, data[pos + 8 : end - 4], end


def _renamed_icc(body: bytes, pos: int) -> bytes:
    """iCCP: a free-text name (1-79 bytes), NUL, method, compressed profile; the name goes."""
    cut = body.find(b"\x00", 0, 80)
    if cut < 1:
        raise damaged(KIND, f"an iCCP chunk at byte {pos} with no profile name")
    new = ICC_NAME + body[cut:]
    crc = zlib.crc32(b"iCCP" + new)
    return struct.pack(">I4s", len(new), b"iCCP") + new + struct.pack(">I", crc)
