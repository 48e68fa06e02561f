"""A JPEG without its metadata: its markers walked, segments kept or dropped, no pixel decoded.

A JPEG (ITU T.81 annex B) is a run of markers, ``FF`` then a code; all but SOI, EOI and
the restart markers are followed by a two-byte length that counts itself. Each scan (SOS)
is followed by entropy-coded data, in which ``FF`` is escaped as ``FF 00``. Kept, byte for
byte: the frame header (SOF), the tables (DQT, DHT, DRI), every scan and its data, and of
the application segments only what says how to show the pixels: the JFIF header (APP0,
with its thumbnail dropped), the ICC profile (APP2) and Adobe's colour transform (APP14).
Dropped: EXIF and XMP (APP1), MPF and FlashPix (APP2), IPTC/Photoshop (APP13), every
other APPn, comments (COM), and all that follows the end of the image (EOI): MPF's
second images, depth maps, an appended page. The EXIF orientation comes back as an EXIF
block of its own that says nothing else (``tiff.orientation_only``).

Only what every browser shows is accepted: baseline and progressive Huffman JPEGs of 8
bits (SOF0, SOF1, SOF2). Lossless, hierarchical and arithmetic-coded ones are refused
(415) from their frame header.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from services.gateway.images.checks import DRAFT_SCALE  # checks.prove decodes a JPEG at 1/8
from services.gateway.images.containers import tiff
from services.gateway.images.containers.base import (
    BYTES_PER_PIXEL,
    MAX_PARTS,
    Stripped,
    damaged,
    too_many,
    unsupported,
)

KIND = "JPEG"
SOI, EOI, SOS, COM = 0xD8, 0xD9, 0xDA, 0xFE
APP0, APP1, APP2, APP14 = 0xE0, 0xE1, 0xE2, 0xEE
FRAMES = {0xC0: "baseline", 0xC1: "extended sequential", 0xC2: "progressive"}
REFUSED_FRAMES = {
    0xC3: "lossless",
    0xC5: "hierarchical",
    0xC6: "hierarchical",
    0xC7: "hierarchical",
    0xC9: "arithmetic-coded",
    0xCA: "arithmetic-coded",
    0xCB: "arithmetic-coded",
    0xCD: "hierarchical",
    0xCE: "hierarchical",
    0xCF: "hierarchical",
    0xDE: "hierarchical",  # DHP
    0xDF: "hierarchical",  # EXP
}
TABLES = {0xC4, 0xDB, 0xDD}  # DHT, DQT, DRI
STANDALONE = {0x00, 0x01, *range(0xD0, 0xD8)}  # FF 00, TEM, RST0-7: only inside a scan
# The end of a scan's entropy-coded data: FF, then anything but a stuffed 00, a restart
# marker or another FF (a fill byte). One regex search runs in C, however many FF 00 pairs.
SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
FILL = re.compile(rb"\xff+")
ICC = b"ICC_PROFILE\x00"
JFIF = b"JFIF\x00"
ADOBE = b"Adobe"
COEFFICIENT_BYTES = 64 * 2  # a block of 8x8 16-bit DCT coefficients


def strip(data: bytes) -> Stripped:
    if not data.startswith(b"\xff\xd8"):
        raise damaged(KIND, "no start-of-image marker")
    kept = [data[:2]]
    after_header = 1  # where the orientation's EXIF block goes: after SOI, or after JFIF
    frame: Frame | None = None
    found_orientation: int | None = None
    scans = 0
    pos = 2
    for _ in range(MAX_PARTS):
        start, marker, pos = _marker(data, pos)
        if marker == EOI:
            break
        if marker in STANDALONE or marker == SOI:
            raise damaged(KIND, f"a stray marker FF {marker:02X} at byte {start}")
        end = _segment_end(data, start, pos, marker)
        body = data[pos + 2 : end]
        segment = data[start:end]
        if marker == SOS:
            if frame is None:
                raise damaged(KIND, f"a scan at byte {start} before the frame header")
            end = _scan_end(data, end)
            kept.append(data[start:end])
            scans += 1
        elif marker in FRAMES:
            if frame is not None:
                raise damaged(KIND, f"a second frame header at byte {start}")
            frame = Frame.parse(body, marker, start)
            kept.append(segment)
        elif marker in REFUSED_FRAMES:
            raise unsupported(KIND, f"it is {REFUSED_FRAMES[marker]} (marker FF {marker:02X})")
        elif marker in TABLES:
            kept.append(segment)
        elif marker == APP0 and body.startswith(JFIF) and len(body) >= 14 and len(kept) == 1:
            # version, density units, x and y density; no thumbnail (0 x 0)
            kept.append(b"\xff\xe0\x00\x10" + body[:12] + b"\x00\x00")
            after_header = 2
        elif marker == APP1 and body.startswith(tiff.EXIF_HEADER):
            if found_orientation is None:  # the first EXIF block is the one viewers read
                found_orientation = tiff.orientation(body)
        elif marker == APP2 and body.startswith(ICC):
            kept.append(segment)
        elif marker == APP14 and body.startswith(ADOBE) and len(body) >= 12:
            kept.append(b"\xff\xee\x00\x0e" + body[:12])  # version, flags, colour transform
        # Anything else (APPn, COM, DNL, DAC, JPGn, reserved) is metadata or unneeded: out.
        pos = end
    else:
        raise too_many(KIND, "segments")
    if frame is None or scans == 0:
        raise damaged(KIND, "no image data before its end marker")
    kept.append(b"\xff\xd9")
    orientation = found_orientation or 1
    if orientation != 1:
        kept.insert(after_header, _app1(tiff.orientation_only(orientation)))
    return Stripped(
        media_type="image/jpeg",
        data=b"".join(kept),
        width=frame.width,
        height=frame.height,
        pixel_bytes=frame.scaled_bytes(),
        decode_bytes=frame.scaled_bytes() + frame.coefficient_bytes() + len(data),
        orientation=orientation,
        orientation_kept=True,
    )


@dataclass(frozen=True)
class Frame:
    """A frame header (SOF0-2): the size, the components and how they are subsampled."""

    width: int
    height: int
    sampling: list[tuple[int, int]]  # (horizontal, vertical) factor of each component
    progressive: bool

    @classmethod
    def parse(cls, body: bytes, marker: int, start: int) -> Frame:
        if len(body) < 6:
            raise damaged(KIND, f"a frame header of {len(body)} bytes at byte {start}")
        precision, height, width, count = struct.unpack_from(">BHHB", body)
        if len(body) != 6 + 3 * count or count not in (1, 3, 4):
            raise damaged(KIND, f"a frame header of {count} components in {len(body)} bytes")
        if precision != 8:
            raise unsupported(KIND, f"its samples are of {precision} bits, not 8")
        if height == 0:
            raise unsupported(KIND, "its height is given after the image data (DNL)")
        if width == 0:
            raise damaged(KIND, "a frame 0 pixels wide")
        sampling = []
        for n in range(count):
            factors = body[6 + 3 * n + 1]
            h, v = factors >> 4, factors & 0x0F
            if not (1 <= h <= 4 and 1 <= v <= 4):
                raise damaged(KIND, f"a component sampled {h}x{v}")
            sampling.append((h, v))
        return cls(width, height, sampling, progressive=marker == 0xC2)

    def scaled_bytes(self) -> int:
        """The pixels decoded at 1/8 scale, 4 bytes each."""
        w, h = math.ceil(self.width / DRAFT_SCALE), math.ceil(self.height / DRAFT_SCALE)
        return w * h * BYTES_PER_PIXEL

    def coefficient_bytes(self) -> int:
        """What libjpeg holds for a progressive JPEG whatever the scale: every component's
        DCT coefficients, in whole MCUs (6320x6320, 4:2:0: 114 MiB; 4:4:4: 229 MiB). A
        baseline JPEG is decoded one MCU row at a time: nothing of this size."""
        if not self.progressive:
            return 0
        h_max = max(h for h, _ in self.sampling)
        v_max = max(v for _, v in self.sampling)
        mcus_across = math.ceil(self.width / (8 * h_max))
        mcus_down = math.ceil(self.height / (8 * v_max))
        blocks = sum(h * mcus_across * v * mcus_down for h, v in self.sampling)
        return blocks * COEFFICIENT_BYTES


def _marker(data: bytes, pos: int) -> tuple[int, int, int]:
    """(where the marker starts, its code, where its length starts), fill bytes skipped."""
    start = pos
    if pos >= len(data):
        raise damaged(KIND, f"it ends at byte {pos} without an end-of-image marker")
    if data[pos] != 0xFF:
        raise damaged(KIND, f"byte {pos} should start a marker, it is {data[pos]:#04x}")
    fill = FILL.match(data, pos)  # fill bytes before a marker are allowed
    assert fill is not None
    pos = fill.end() - 1
    if pos + 1 >= len(data):
        raise damaged(KIND, f"it ends at byte {len(data)} inside a marker")
    return start, data[pos + 1], pos + 2


def _segment_end(data: bytes, start: int, pos: int, marker: int) -> int:
    if pos + 2 > len(data):
        raise damaged(KIND, f"it ends inside the length of segment FF {marker:02X} at byte {start}")
    length = int.from_bytes(data[pos : pos + 2], "big")
    if length < 2:
        raise damaged(KIND, f"segment FF {marker:02X} at byte {start} claims {length} bytes")
    end = pos + length
    if end > len(data):
        raise damaged(
            KIND,
            f"segment FF {marker:02X} at byte {start} claims {length} bytes, "
            f"{end - len(data)} past the end of the file",
        )
    return end


def _scan_end(data: bytes, pos: int) -> int:
    found = SCAN_END.search(data, pos)
    if found is None:
        raise damaged(KIND, "its image data ends without an end-of-image marker")
    return found.start()


def _app1(block: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block
