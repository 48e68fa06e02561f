"""A WebP without its metadata: its RIFF chunks walked and kept or dropped; no pixel decoded.

A WebP (RFC 9649) is a RIFF file: ``RIFF``, a 4-byte little-endian size, ``WEBP``, then
chunks (a four-letter code, a 4-byte size, the data, a pad byte when the size is odd). A
simple WebP is one ``VP8 `` (lossy) or ``VP8L`` (lossless) chunk; an extended one starts
with ``VP8X`` (flags and the canvas size) and may hold ``ICCP``, ``ANIM`` and ``ANMF``
(animation), ``ALPH``, ``EXIF``, ``XMP `` and unknown chunks. Kept, byte for byte: the
image chunks, alpha, the ICC profile and the animation (each frame's unknown chunks
dropped); ``VP8X``'s flags are rewritten to say EXIF and XMP are gone. Dropped: EXIF (its
orientation the gateway applies to the pixels), XMP, unknown chunks, and whatever follows
the RIFF size.
"""

from __future__ import annotations

import struct

from services.gateway.images.containers import tiff
from services.gateway.images.containers.base import (
    BYTES_PER_PIXEL,
    MAX_PARTS,
    Stripped,
    damaged,
    too_many,
)

KIND = "WebP"
KEPT = {b"ICCP", b"ANIM", b"ALPH", b"VP8 ", b"VP8L"}
IMAGES = {b"VP8 ", b"VP8L"}
FRAME_KEPT = {b"ALPH", b"VP8 ", b"VP8L"}
ICC_FLAG, EXIF_FLAG, XMP_FLAG = 0x20, 0x08, 0x04
# Pillow decodes every WebP through libwebp's animation decoder: its canvas and the one
# before it, the frame copied out to Python, Pillow's image: 16 bytes a pixel, measured.
DECODE_BYTES_PER_PIXEL = 16


def strip(data: bytes) -> Stripped:
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise damaged(KIND, "no RIFF WEBP header")
    (size,) = struct.unpack_from("<I", data, 4)
    riff_end = 8 + size
    if size < 4 or riff_end > len(data):
        raise damaged(
            KIND, f"its RIFF header claims {size:,} bytes, the file has {len(data) - 8:,}"
        )
    chunks = _chunks(data, 12, riff_end)
    if not chunks:
        raise damaged(KIND, "no chunk in it")
    first, payload = chunks[0]
    if first in IMAGES:  # simple: one image chunk, nothing else
        width, height = _bitstream_size(first, payload)
        kept = [(first, payload)]
        orientation, frames, lossless = 1, 1, first == b"VP8L"
    elif first == b"VP8X":
        width, height = _canvas_size(payload)
        kept, orientation, frames = _extended(chunks)
        lossless = any(code == b"VP8L" for code, _ in kept)
    else:
        raise damaged(KIND, f"its first chunk is {first!r}, not VP8, VP8L or VP8X")
    body = b"".join(_chunk(code, payload) for code, payload in kept)
    pixels = width * height
    return Stripped(
        media_type="image/webp",
        data=b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body,
        width=width,
        height=height,
        pixel_bytes=pixels * BYTES_PER_PIXEL,
        decode_bytes=pixels * DECODE_BYTES_PER_PIXEL + len(data),
        orientation=orientation,
        animated=frames > 1,
        lossless=lossless,
    )


def _extended(chunks: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], int, int]:
    """The chunks an extended WebP keeps, the orientation its EXIF said, its frame count."""
    kept: list[tuple[bytes, bytes]] = []
    orientation = 1
    frames = images = 0
    for code, payload in chunks[1:]:
        if code in KEPT:
            kept.append((code, payload))
            images += code in IMAGES
        elif code == b"ANMF":
            kept.append((code, _frame(payload)))
            frames += 1
        elif code == b"EXIF" and orientation == 1:
            orientation = tiff.orientation(payload)
    if images == 0 and frames == 0:
        raise damaged(KIND, "no image chunk in it")
    flags = chunks[0][1][0] & ~(EXIF_FLAG | XMP_FLAG | ICC_FLAG)
    if any(code == b"ICCP" for code, _ in kept):
        flags |= ICC_FLAG
    header = bytes([flags]) + chunks[0][1][1:]
    return [(b"VP8X", header), *kept], orientation, max(frames, 1)


def _chunks(data: bytes, pos: int, end: int) -> list[tuple[bytes, bytes]]:
    """Every (code, data) from ``pos`` to ``end``, each length checked."""
    found = []
    while pos < end:
        if pos + 8 > end:
            raise damaged(KIND, f"it ends inside a chunk header at byte {pos}")
        code, size = struct.unpack_from("<4sI", data, pos)
        if pos + 8 + size > end:
            raise damaged(
                KIND,
                f"chunk {code!r} at byte {pos} claims {size:,} bytes, "
                f"{pos + 8 + size - end:,} past the end of its container",
            )
        found.append((code, data[pos + 8 : pos + 8 + size]))
        if len(found) > MAX_PARTS:
            raise too_many(KIND, "chunks")
        pos += 8 + size + (size & 1)  # odd sizes are padded (a missing last pad is let be)
    return found


def _frame(payload: bytes) -> bytes:
    """An ANMF chunk's data: its 16-byte frame header, then only its image chunks."""
    if len(payload) < 16:
        raise damaged(KIND, f"an animation frame of {len(payload)} bytes")
    inner = [(c, p) for c, p in _chunks(payload, 16, len(payload)) if c in FRAME_KEPT]
    if not any(code in IMAGES for code, _ in inner):
        raise damaged(KIND, "an animation frame without an image")
    return payload[:16] + b"".join(_chunk(code, p) for code, p in inner)


def _chunk(code: bytes, payload: bytes) -> bytes:
    return code + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def _canvas_size(payload: bytes) -> tuple[int, int]:
    if len(payload) != 10:
        raise damaged(KIND, f"a VP8X chunk of {len(payload)} bytes, not 10")
    width = int.from_bytes(payload[4:7], "little") + 1
    height = int.from_bytes(payload[7:10], "little") + 1
    return width, height


def _bitstream_size(code: bytes, payload: bytes) -> tuple[int, int]:
    """The size a simple WebP's VP8 key frame or VP8L header says."""
    if code == b"VP8 ":
        if len(payload) < 10 or payload[3:6] != b"\x9d\x01\x2a" or payload[0] & 1:
            raise damaged(KIND, "its VP8 data does not start with a key frame")
        width, height = struct.unpack_from("<HH", payload, 6)
        return width & 0x3FFF, height & 0x3FFF
    if len(payload) < 5 or payload[0] != 0x2F:
        raise damaged(KIND, "its VP8L data has no VP8L signature")
    (bits,) = struct.unpack_from("<I", payload, 1)
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
