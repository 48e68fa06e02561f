"""Hostile image files at the gateway's own parsers (services/gateway/images/containers): malformed
segment lengths, truncated chunks, lengths that overflow, loops that never end. Each is a
400 (or a 415 for a kind no browser shows) with a reason that says what and where; never
another exception, never a hang, never seconds of CPU (issue 21)."""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.images import checks, intake
from tests import metadatafiles as corpus

MP = 40_000_000
DECODED = checks.DEFAULT_MAX_DECODED
JPEG = corpus.plain(corpus.VARIANTS["jpeg"])
PNG = corpus.plain(corpus.VARIANTS["png"])
GIF = corpus.plain(corpus.VARIANTS["gif"])
WEBP = corpus.plain(corpus.VARIANTS["webp"])
ANIMATED_WEBP = corpus.plain(corpus.VARIANTS["webp-animated"])


def refusal(data: bytes) -> checks.BadImage:
    started = time.process_time()
    with pytest.raises(checks.BadImage) as err:
        intake.decoded(intake.checked(data, MP, DECODED))
    assert time.process_time() - started < 0.5
    return err.value


def segment_at(data: bytes, code: int) -> int:
    """Where the first JPEG segment FF ``code`` starts."""
    return data.index(bytes([0xFF, code]))


def without_segments(data: bytes, code: int) -> bytes:
    """A JPEG without its FF ``code`` segments before the first scan (the test's own walk)."""
    out, pos = [data[:2]], 2
    while data[pos + 1] != 0xDA:
        end = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if data[pos + 1] != code:
            out.append(data[pos:end])
        pos = end
    return b"".join(out) + data[pos:]


def with_byte(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value) :]


def sof(precision: int = 8, height: int = 16, width: int = 16, code: int = 0xC0) -> bytes:
    return corpus.jpeg_segment(
        code, struct.pack(">BHHB", precision, height, width, 1) + b"\x01\x11\x00"
    )


def png_chunks(*chunks: bytes) -> bytes:
    return corpus.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)) + b"".join(
        chunks
    )


IDAT = corpus.png_chunk(b"IDAT", zlib.compress(b"\x00" + b"\x00" * 12) * 1)
IEND = corpus.png_chunk(b"IEND", b"")
SCREEN = b"GIF89a\x04\x00\x04\x00\x00\x00\x00"
FRAME = b"\x2c\x00\x00\x00\x00\x04\x00\x04\x00\x00\x02\x02\x44\x01\x00"


def webp(*chunks: tuple[bytes, bytes]) -> bytes:
    return corpus.riff(list(chunks))


VP8X = (b"VP8X", b"\x00\x00\x00\x00" + (3).to_bytes(3, "little") * 2)
SIMPLE_CHUNKS = corpus.riff_chunks(WEBP)

CASES: dict[str, tuple[bytes, int, str]] = {
    # JPEG: ITU T.81 markers and their lengths
    "jpeg-length-under-2": (
        with_byte(JPEG, segment_at(JPEG, 0xDB) + 2, b"\x00\x01"),
        400,
        "segment FF DB at byte",
    ),
    "jpeg-length-past-the-end": (
        with_byte(JPEG[:200], segment_at(JPEG, 0xDB) + 2, b"\xff\xff"),
        400,
        "past the end of the file",
    ),
    "jpeg-cut-mid-scan": (JPEG[: len(JPEG) - 40], 400, "without an end-of-image marker"),
    "jpeg-no-end-marker": (JPEG[:-2], 400, "without an end-of-image marker"),
    "jpeg-cut-inside-a-marker": (b"\xff\xd8\xff", 400, "inside a marker"),
    "jpeg-cut-inside-a-length": (b"\xff\xd8\xff\xfe\x00", 400, "inside the length"),
    "jpeg-only-start-and-end": (b"\xff\xd8\xff\xd9", 400, "no image data"),
    "jpeg-scan-before-frame": (
        b"\xff\xd8" + corpus.jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\xff\xd9",
        400,
        "before the frame header",
    ),
    "jpeg-two-frames": (b"\xff\xd8" + sof() + sof() + b"\xff\xd9", 400, "second frame"),
    "jpeg-frame-of-2-components": (
        b"\xff\xd8" + corpus.jpeg_segment(0xC0, b"\x08\x00\x10\x00\x10\x02" + b"\x01\x11\x00" * 2),
        400,
        "2 components",
    ),
    "jpeg-frame-length-lies": (
        b"\xff\xd8" + corpus.jpeg_segment(0xC0, b"\x08\x00\x10\x00\x10\x03\x01\x11\x00"),
        400,
        "3 components in 9 bytes",
    ),
    "jpeg-zero-width": (b"\xff\xd8" + sof(width=0) + b"\xff\xd9", 400, "0 pixels wide"),
    "jpeg-sampling-0": (
        b"\xff\xd8" + corpus.jpeg_segment(0xC0, b"\x08\x00\x10\x00\x10\x01\x01\x00\x00"),
        400,
        "sampled 0x0",
    ),
    "jpeg-stray-restart": (JPEG[:2] + b"\xff\xd0" + JPEG[2:], 400, "stray marker FF D0"),
    "jpeg-stray-stuffing": (JPEG[:2] + b"\xff\x00" + JPEG[2:], 400, "stray marker FF 00"),
    "jpeg-garbage-between-segments": (
        JPEG[:20] + b"junk" + JPEG[20:],  # after JFIF's APP0
        400,
        "byte 20 should start a marker",
    ),
    "jpeg-12-bit": (b"\xff\xd8" + sof(precision=12) + b"\xff\xd9", 415, "12 bits"),
    "jpeg-height-in-dnl": (b"\xff\xd8" + sof(height=0) + b"\xff\xd9", 415, "(DNL)"),
    "jpeg-lossless": (b"\xff\xd8" + sof(code=0xC3) + b"\xff\xd9", 415, "lossless"),
    "jpeg-arithmetic": (b"\xff\xd8" + sof(code=0xC9) + b"\xff\xd9", 415, "arithmetic"),
    "jpeg-hierarchical": (b"\xff\xd8" + sof(code=0xC5) + b"\xff\xd9", 415, "hierarchical"),
    "jpeg-without-its-quantisation-tables": (without_segments(JPEG, 0xDB), 400, "damaged"),
    # PNG: chunk lengths, CRCs, order
    "png-length-over-2^31": (
        PNG[:8] + b"\xff\xff\xff\xff" + PNG[12:],
        400,
        "claims 4,294,967,295 bytes (over 2^31)",
    ),
    "png-length-past-the-end": (
        PNG[:8] + b"\x7f\xff\xff\xff" + PNG[12:],
        400,
        "claims 2,147,483,647 bytes",
    ),
    "png-bad-crc": (with_byte(PNG, 29, b"\x00\x00\x00\x00"), 400, "fails its CRC check"),
    "png-first-chunk-not-ihdr": (
        corpus.SIGNATURE_PNG + IDAT + png_chunks() + IEND,
        400,
        "first chunk is not a 13-byte IHDR",
    ),
    "png-ihdr-of-12-bytes": (
        corpus.SIGNATURE_PNG + corpus.png_chunk(b"IHDR", b"\x00" * 12) + IDAT + IEND,
        400,
        "13-byte IHDR",
    ),
    "png-zero-width": (
        corpus.SIGNATURE_PNG
        + corpus.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 4, 8, 2, 0, 0, 0))
        + IDAT
        + IEND,
        400,
        "a header of 0x4 pixels",
    ),
    "png-second-ihdr": (corpus.SIGNATURE_PNG + png_chunks(png_chunks()) + IEND, 400, "second IHDR"),
    "png-no-idat": (corpus.SIGNATURE_PNG + png_chunks() + IEND, 400, "no image data"),
    "png-cut-before-iend": (PNG[:-12], 400, "before its IEND"),
    "png-cut-mid-chunk": (PNG[:60], 400, "past the end of the file"),
    "png-unknown-critical-chunk": (
        corpus.SIGNATURE_PNG + png_chunks(corpus.png_chunk(b"CgBI", b"\x00" * 4), IDAT) + IEND,
        415,
        "unknown critical chunk 'CgBI'",
    ),
    "png-type-not-letters": (
        corpus.SIGNATURE_PNG + png_chunks(b"\x00\x00\x00\x00\x00\x01\x02\x03\x00\x00\x00\x00"),
        400,
        "no valid type",
    ),
    "png-damaged-image-data": (
        corpus.SIGNATURE_PNG + png_chunks(corpus.png_chunk(b"IDAT", b"not zlib")) + IEND,
        400,
        "damaged",
    ),
    # GIF: blocks and sub-blocks
    "gif-cut-in-screen": (b"GIF89a\x04\x00", 400, "inside its screen descriptor"),
    "gif-cut-in-frame-descriptor": (SCREEN + FRAME[:5], 400, "inside the image descriptor"),
    "gif-sub-block-past-the-end": (SCREEN + FRAME[:-3] + b"\xff\x01", 400, "past the end"),
    "gif-unknown-block": (SCREEN + b"\x99" + FRAME + b"\x3b", 400, "starts no block"),
    "gif-no-trailer": (SCREEN + FRAME, 400, "without its trailer"),
    "gif-no-image": (SCREEN + b"\x21\xfe\x01x\x00\x3b", 400, "no image"),
    "gif-empty-frame": (SCREEN + with_byte(FRAME, 5, b"\x00\x00") + b"\x3b", 400, "0x4 pixels"),
    "gif-cut-in-extension": (SCREEN + b"\x21", 400, "inside the extension"),
    # WebP: the RIFF size and chunk sizes
    "webp-riff-size-past-the-end": (
        WEBP[:4] + struct.pack("<I", len(WEBP) * 2) + WEBP[8:],
        400,
        "its RIFF header claims",
    ),
    "webp-riff-size-under-4": (WEBP[:4] + struct.pack("<I", 2) + WEBP[8:], 400, "claims 2 bytes"),
    "webp-chunk-size-overflow": (
        webp(VP8X, (b"EXIF", b"")).replace(b"EXIF\x00\x00\x00\x00", b"EXIF\xf0\xff\xff\xff"),
        400,
        "past the end of its container",
    ),
    "webp-vp8x-of-9-bytes": (webp((b"VP8X", b"\x00" * 9)), 400, "not 10"),
    "webp-unknown-first-chunk": (webp((b"DOVE", b"x"), *SIMPLE_CHUNKS), 400, "first chunk"),
    "webp-no-image": (webp(VP8X, (b"EXIF", b"x")), 400, "no image chunk"),
    "webp-short-frame": (
        webp(VP8X, (b"ANIM", b"\x00" * 6), (b"ANMF", b"\x00" * 8)),
        400,
        "frame of 8",
    ),
    "webp-frame-without-image": (
        webp(VP8X, (b"ANIM", b"\x00" * 6), (b"ANMF", b"\x00" * 16)),
        400,
        "frame without an image",
    ),
    "webp-vp8-not-a-key-frame": (webp((b"VP8 ", b"\x01" + b"\x00" * 20)), 400, "key frame"),
    "webp-vp8l-no-signature": (webp((b"VP8L", b"\x00" * 10)), 400, "VP8L signature"),
    "webp-canvas-not-the-image": (
        webp((b"VP8X", b"\x00" * 4 + (999).to_bytes(3, "little") * 2), *SIMPLE_CHUNKS),
        400,
        "",
    ),
}


@pytest.mark.parametrize(("data", "status", "reason"), CASES.values(), ids=list(CASES))
def test_a_malformed_file_is_refused_with_what_and_where(
    data: bytes, status: int, reason: str
) -> None:
    refused = refusal(data)
    assert refused.status == status, str(refused)
    assert reason in str(refused)


@pytest.mark.parametrize("variant", list(corpus.VARIANTS))
def test_a_file_cut_anywhere_is_refused(variant: str) -> None:
    """Prefixes of a file with every kind of metadata (bar bytes after its end): each is
    refused, for the end of the image is the end of the file."""
    fmt = corpus.VARIANTS[variant].fmt
    data = corpus.case(variant, *(k for k in corpus.KINDS[fmt] if k != "after-end")).data
    for cut in range(1, len(data), max(1, len(data) // 300)):
        refused = refusal(data[:cut])
        assert refused.status in (400, 415), (cut, str(refused))


MAKERS: list[Callable[[], bytes]] = [
    lambda: b"\xff\xd8" + b"\xff\xfe\x00\x02" * 2_600_000 + b"\xff\xd9",
    lambda: corpus.SIGNATURE_PNG + png_chunks(corpus.png_chunk(b"prVt", b"") * 870_000),
    lambda: SCREEN + b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02" + b"\x01\x00" * 5_000_000,
    lambda: SCREEN + b"\x21\xfe\x00" * 3_400_000 + b"\x3b",
    lambda: webp(VP8X, *([(b"DOVE", b"")] * 1_300_000)),
]


@pytest.mark.parametrize("make", MAKERS, ids=["jpeg", "png", "gif-sub-blocks", "gif", "webp"])
def test_ten_megabytes_of_empty_parts_cost_no_more_than_a_fraction_of_a_second(
    make: Callable[[], bytes],
) -> None:
    """Walking 10 MB of empty segments, chunks or sub-blocks took up to 5 CPU-s; the
    parsers stop at 100,000 parts."""
    data = make()
    assert len(data) >= 10_000_000
    refused = refusal(data)
    assert refused.status == 400 and "no image is made like that" in str(refused)


VARIANT_FILES = [corpus.case(name).data for name in corpus.VARIANTS]


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.sampled_from(VARIANT_FILES),
    st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=0, max_size=8)), max_size=6),
    st.one_of(st.none(), st.floats(0, 1)),
)
def test_mutated_files_are_stored_bare_or_refused_never_a_crash(
    data: bytes, edits: list[tuple[float, bytes]], keep: float | None
) -> None:
    """Random bytes written over a file with every kind of metadata, perhaps cut: the
    gateway either stores it without any planted marker or refuses it with a 4xx."""
    mutated = bytearray(data)
    for where, value in edits:
        at = int(where * len(mutated))
        mutated[at : at + len(value)] = value
    if keep is not None:
        mutated = mutated[: max(1, int(len(mutated) * keep))]
    started = time.process_time()
    status, stored = 201, b""
    try:
        stored = intake.decoded(intake.checked(bytes(mutated), MP, DECODED)).data
    except checks.BadImage as exc:
        status = exc.status
    assert status in (201, 400, 413, 415)
    assert corpus.markers_in(stored) == []
    assert time.process_time() - started < 0.5
