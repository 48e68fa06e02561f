"""Every accepted format x every kind of metadata: the stored file and its thumbnails carry
none of it, and the pixels are the uploaded ones (issue 21; the corpus: tests/metadatafiles.py).

Byte by byte, not only as Pillow reads the result: a marker planted in each kind (a fake GPS
datum, an artist, a comment, ...) must not be anywhere in what is stored.
"""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image, ImageSequence

from services.gateway.images import checks, intake
from services.resizer import thumbnails
from tests import metadatafiles as corpus

MP = 40_000_000
DECODED = checks.DEFAULT_MAX_DECODED
SIZES = [128, 512]
# What Pillow may report of a stored file or a thumbnail: how to decode and show it.
SHOWN_INFO = {
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "adobe", "adobe_transform",
    "progressive", "progression", "icc_profile", "loop", "duration", "background",
    "transparency", "version", "timestamp", "disposal", "blend", "default_image", "bbox",
    "extension", "srgb", "gamma", "chromaticity", "aspect",
}  # fmt: skip


def planted(data: bytes) -> list[bytes]:
    """The markers in ``data`` as they were planted: as text, or zlib-compressed (a PNG's
    zTXt and compressed iTXt)."""
    found = corpus.markers_in(data)
    for kind in ("text-z", "text-iz"):
        if zlib.compress(corpus.marker(kind)) in data:
            found.append(zlib.compress(corpus.marker(kind)))
    return found


def pixels(data: bytes) -> list[bytes]:
    """Every frame, decoded to RGBA."""
    with Image.open(io.BytesIO(data)) as image:
        return [frame.convert("RGBA").tobytes() for frame in ImageSequence.Iterator(image)]


def timing(data: bytes) -> list[tuple[object, object]]:
    """Each frame's duration, and the loop count: an animation's timing."""
    with Image.open(io.BytesIO(data)) as image:
        return [
            (frame.info.get("duration"), image.info.get("loop"))
            for frame in ImageSequence.Iterator(image)
        ]


def stored(data: bytes) -> bytes:
    return intake.decoded(intake.checked(data, MP, DECODED)).data


def assert_bare(data: bytes, what: str) -> None:
    """No planted marker in ``data``, and nothing but how to show it as Pillow reads it."""
    assert planted(data) == [], f"{what} still carries {planted(data)}"
    with Image.open(io.BytesIO(data)) as image:
        extra = set(image.info) - SHOWN_INFO
        assert not extra, f"{what}: {extra}"
        assert not image.getexif(), f"{what} has EXIF {dict(image.getexif())}"
        assert not getattr(image, "text", None), f"{what} has text chunks"


@pytest.mark.parametrize(
    ("variant", "kind"), corpus.every_case(), ids=[f"{v}:{k}" for v, k in corpus.every_case()]
)
def test_each_kind_of_metadata_is_gone_and_the_pixels_are_the_uploaded_ones(
    variant: str, kind: str
) -> None:
    case = corpus.case(variant, kind)
    if kind not in corpus.KEPT_KINDS:
        assert planted(case.data), f"{case.name}: nothing was planted"
    out = stored(case.data)
    assert_bare(out, f"the stored {case.name}")
    assert pixels(out) == pixels(case.data)
    assert timing(out) == timing(case.data)
    assert stored(out) == out  # nothing left to strip


@pytest.mark.parametrize("variant", list(corpus.VARIANTS))
def test_every_kind_at_once_is_gone_from_the_original_and_every_thumbnail(variant: str) -> None:
    case = corpus.case(variant)
    assert len(planted(case.data)) >= 3, case.name
    out = stored(case.data)
    assert_bare(out, f"the stored {case.name}")
    assert pixels(out) == pixels(case.data)
    for thumb in thumbnails.make(out, SIZES, MP, DECODED):
        assert_bare(thumb.data, f"the {thumb.size}px thumbnail of {case.name}")


@pytest.mark.parametrize("variant", list(corpus.VARIANTS))
def test_the_resizer_alone_copies_no_metadata_into_thumbnails(variant: str) -> None:
    """Issue 21: a JPEG's COM and a GIF's comment were copied into thumbnails (Pillow's JPEG
    encoder writes ``info["comment"]``). Made from the file as uploaded, no gateway before."""
    case = corpus.case(variant)
    for thumb in thumbnails.make(case.data, SIZES, MP, DECODED):
        assert_bare(thumb.data, f"the {thumb.size}px thumbnail of {case.name}")


@pytest.mark.parametrize("variant", [v for v in corpus.VARIANTS if not v.startswith("gif")])
def test_the_icc_profile_is_kept_in_the_original_and_its_thumbnails(variant: str) -> None:
    case = corpus.case(variant, "icc")
    out = stored(case.data)
    with Image.open(io.BytesIO(out)) as image:
        assert image.info.get("icc_profile") == corpus.ICC
    for thumb in thumbnails.make(out, SIZES, MP, DECODED):
        with Image.open(io.BytesIO(thumb.data)) as image:
            assert image.info.get("icc_profile") == corpus.ICC, thumb.size


def test_a_gifs_icc_profile_is_kept_and_a_pngs_profile_name_is_not() -> None:
    gif = stored(corpus.case("gif", "icc").data)
    assert b"ICCRGBG1012" in gif and corpus.ICC[:200] in gif
    png = stored(corpus.case("png", "icc").data)
    assert corpus.marker("icc") not in png and b"iCCPICC profile\x00" in png
