"""A GIF without its metadata: its blocks walked and kept or dropped; no pixel decoded.

A GIF (GIF89a specification) is a header, a logical screen descriptor and its colour table,
then blocks: images (``2C``: a descriptor, a colour table, LZW data in sub-blocks of up to
255 bytes), extensions (``21``, a label, sub-blocks) and the trailer (``3B``). Kept, byte
for byte: every image, the graphic control extensions (delay, disposal, transparency),
the looping of an animation (the NETSCAPE2.0 or ANIMEXTS1.0 application extension, its
loop count only) and an ICC profile (ICCRGBG1012). Dropped: comments, plain-text
extensions, every other application extension (XMP among them: ``XMP DataXMP``), and
whatever follows the trailer. An extension kept keeps only the sub-blocks its
specification gives it.
"""

from __future__ import annotations

import struct

from services.gateway.images.containers.base import (
    BYTES_PER_PIXEL,
    MAX_PARTS,
    Stripped,
    damaged,
    too_many,
)

KIND = "GIF"
IMAGE, EXTENSION, TRAILER = 0x2C, 0x21, 0x3B
GRAPHIC_CONTROL, APPLICATION = 0xF9, 0xFF
LOOPING = (b"NETSCAPE2.0", b"ANIMEXTS1.0")
ICC = b"ICCRGBG1012"


def strip(data: bytes) -> Stripped:
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise damaged(KIND, "no GIF header")
    if len(data) < 13:
        raise damaged(KIND, "it ends inside its screen descriptor")
    screen_w, screen_h, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + _colour_table(flags)
    kept = [data[:pos]]
    width, height = screen_w, screen_h  # grown to the first frame, as Pillow and browsers do
    reach_w, reach_h = width, height  # ... and to every frame, as Pillow does when it seeks
    frames = parts = 0  # parts: blocks and sub-blocks, at most MAX_PARTS
    while parts <= MAX_PARTS:
        parts += 1
        if pos >= len(data):
            raise damaged(KIND, f"it ends at byte {pos} without its trailer")
        block, start = data[pos], pos
        if block == TRAILER:
            break
        if block == IMAGE:
            if pos + 10 > len(data):
                raise damaged(KIND, f"it ends inside the image descriptor at byte {pos}")
            left, top, w, h, flags = struct.unpack_from("<HHHHB", data, pos + 1)
            if w == 0 or h == 0:
                raise damaged(KIND, f"a frame of {w}x{h} pixels at byte {pos}")
            if frames == 0:
                width, height = max(width, left + w), max(height, top + h)
            reach_w, reach_h = max(reach_w, left + w), max(reach_h, top + h)
            pos += 10 + _colour_table(flags) + 1  # the LZW minimum code size
            pos, count = _sub_blocks(data, pos, start)
            parts += count
            kept.append(data[start:pos])
            frames += 1
        elif block == EXTENSION:
            if pos + 2 > len(data):
                raise damaged(KIND, f"it ends inside the extension at byte {pos}")
            label = data[pos + 1]
            pos, count = _sub_blocks(data, pos + 2, start)
            parts += count
            kept.append(_kept_extension(label, data[start:pos]))
        else:
            raise damaged(KIND, f"byte {pos} starts no block (it is {block:#04x})")
    else:
        raise too_many(KIND, "blocks and sub-blocks")
    if frames == 0:
        raise damaged(KIND, "no image in it")
    kept.append(b"\x3b")
    return Stripped(
        media_type="image/gif",
        data=b"".join(kept),
        width=width,
        height=height,
        pixel_bytes=reach_w * reach_h * BYTES_PER_PIXEL,
        decode_bytes=reach_w * reach_h * BYTES_PER_PIXEL + len(data),
        animated=frames > 1,
    )


def _colour_table(flags: int) -> int:
    """The bytes of the colour table a descriptor's flags announce (0: none)."""
    return 3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0


def _sub_blocks(data: bytes, pos: int, start: int) -> tuple[int, int]:
    """Where the sub-blocks from ``pos`` end (after their 0 terminator), and how many."""
    for count in range(MAX_PARTS):
        if pos >= len(data):
            raise damaged(KIND, f"the block at byte {start} runs past the end of the file")
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos, count
    raise too_many(KIND, "sub-blocks in one block")


def _kept_extension(label: int, block: bytes) -> bytes:
    """What an extension leaves in the stored file: itself, its loop count, or nothing."""
    if label == GRAPHIC_CONTROL:  # one 4-byte sub-block: disposal, delay, transparency
        return block[:7] + b"\x00" if block[2] == 4 and len(block) >= 8 else b""
    if label != APPLICATION or len(block) < 14 or block[2] != 11:
        return b""  # comments (FE), plain text (01), unknown labels
    ident, rest = block[3:14], block[14:]
    if ident == ICC:
        return block
    # NETSCAPE2.0: a sub-block 03 01 <loop count, 2 bytes>; its other sub-blocks go.
    if ident in LOOPING and rest[:2] == b"\x03\x01" and len(rest) >= 5:
        return block[:14] + rest[:4] + b"\x00"
    return b""
