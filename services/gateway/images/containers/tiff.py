"""The EXIF orientation: the one EXIF field a stored original keeps, read and written here.

EXIF is a TIFF structure (CIPA DC-008): a byte-order mark (``II`` little-endian, ``MM``
big-endian), 42, the offset of the first IFD; an IFD is a count then 12-byte entries (tag,
type, count, value). Orientation is tag 0x0112, one SHORT, 1..8, in the first IFD. Reading
it never fails: a block too short, an offset out of range or an odd value reads as 1
(upright), which is what a viewer makes of it too.
"""

from __future__ import annotations

import struct

ORIENTATION = 0x0112
SHORT = 3
EXIF_HEADER = b"Exif\x00\x00"  # before the TIFF structure in a JPEG's APP1 (some PNGs too)


def orientation(block: bytes) -> int:
    """The orientation an EXIF block says (1..8), 1 when it says none or cannot be read."""
    tiff = block.removeprefix(EXIF_HEADER)
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    magic, ifd = struct.unpack_from(f"{order}HI", tiff, 2)
    if magic != 42 or ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(f"{order}H", tiff, ifd)
    entries = min(count, (len(tiff) - ifd - 2) // 12)  # only the entries that are there
    for n in range(entries):
        tag, kind, values, value = struct.unpack_from(f"{order}HHIH", tiff, ifd + 2 + 12 * n)
        if tag == ORIENTATION:
            return value if kind == SHORT and values == 1 and 1 <= value <= 8 else 1
    return 1


def orientation_only(value: int) -> bytes:
    """A whole EXIF block (with its ``Exif`` header) that says only ``value``: byte order,
    42, the IFD at 8, one entry, no next IFD. 32 bytes."""
    return EXIF_HEADER + struct.pack(
        ">2sHIHHHIHHI", b"MM", 42, 8, 1, ORIENTATION, SHORT, 1, value, 0, 0
    )
