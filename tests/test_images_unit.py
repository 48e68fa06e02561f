"""Upload checks, image names and thumbnails: pure functions on real image files."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from services.gateway.images import checks, intake
from services.gateway.images.store import BadName, valid_id, valid_size
from services.resizer import thumbnails
from tests import imagefiles

MP = 40_000_000
DECODED = checks.DEFAULT_MAX_DECODED


def accepted(
    data: bytes, max_pixels: int = MP, max_decoded: int = DECODED
) -> tuple[bytes, checks.ImageInfo]:
    """What the gateway stores for an upload and its facts (intake.accept, minus the
    threads and the budget)."""
    stored = intake.decoded(intake.checked(data, max_pixels, max_decoded))
    return stored.data, intake.info_of(stored)


def test_a_photo_is_accepted_with_its_facts() -> None:
    data = imagefiles.photo(640, 480)
    _, info = accepted(data)
    assert (info.media_type, info.width, info.height, info.size) == (
        "image/jpeg",
        640,
        480,
        len(data),
    )
    assert info.extension == "jpg"
    _, png = accepted(imagefiles.photo(30, 20, fmt="PNG", mode="RGBA"))
    assert (png.media_type, png.extension) == ("image/png", "png")


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (b"", 400, "empty"),
        (b"#!/bin/sh\nrm -rf /\n", 415, "not an image"),
        (imagefiles.truncated(), 400, "truncated"),
        (imagefiles.truncated(imagefiles.photo(300, 300, fmt="PNG")), 400, "truncated"),
        (imagefiles.bomb(8000, 8000), 413, "pixel limit"),  # from the header
        (imagefiles.bomb(), 413, "decompression bomb"),
        (imagefiles.photo(64, 64, fmt="BMP"), 415, "not one of"),
    ],
    ids=["empty", "script", "truncated-jpeg", "truncated-png", "bomb", "huge-bomb", "bmp"],
)
def test_bad_uploads_are_refused_with_a_reason(data: bytes, status: int, reason: str) -> None:
    with pytest.raises(checks.BadImage) as err:
        accepted(data)
    assert err.value.status == status
    assert reason in str(err.value)


def test_pillows_own_bound_answers_a_bomb_too() -> None:
    # Between Pillow's bound and twice it Pillow warns (an error here), above it raises.
    saved = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = 1000
        for size in (40, 100):  # 1,600 px: the warning; 10,000 px: the error
            with pytest.raises(checks.BadImage) as err:
                checks.prove(imagefiles.photo(size, size), "image/jpeg", size, size)
            assert err.value.status == 413 and "decompression bomb" in str(err.value)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


@pytest.mark.parametrize(
    ("raw", "fallback_from", "expected"),
    [
        ("  My\tcat \n", None, "My cat"),
        ("\u202egnp.exe\x00", None, "gnp.exe"),  # bidi override and NUL go
        ("", "../../etc/passwd", "passwd"),
        (None, "C:\\Users\\me\\holiday.final.JPG", "holiday.final"),
        (None, None, "Untitled"),
        ("x" * 500, None, "x" * checks.TITLE_MAX),
    ],
)
def test_titles_are_sanitised_text(
    raw: str | None, fallback_from: str | None, expected: str
) -> None:
    assert checks.title(raw or checks.title_from_filename(fallback_from)) == expected


@pytest.mark.parametrize("bad", ["..", "../etc", ".hidden", "a/b", "A", "x" * 65, "%2e%2e", ""])
def test_ids_with_path_tricks_are_refused(bad: str) -> None:
    with pytest.raises(BadName):
        valid_id(bad)


@pytest.mark.parametrize("bad", ["0128", "1", "12345", "128.jpg", "-5", "../1"])
def test_thumbnail_sizes_are_plain_numbers(bad: str) -> None:
    with pytest.raises(BadName):
        valid_size(bad)


def _decode(thumb: thumbnails.Thumb) -> Image.Image:
    image = Image.open(io.BytesIO(thumb.data))
    image.load()
    return image


def test_thumbnails_keep_the_aspect_ratio_and_are_reencoded() -> None:
    thumbs = thumbnails.make(imagefiles.photo(1600, 1200, orientation=1), [128, 512], MP, DECODED)
    assert [(t.size, t.width, t.height) for t in thumbs] == [(128, 128, 96), (512, 512, 384)]
    for t in thumbs:
        image = _decode(t)
        assert image.format == "JPEG" and t.media_type == "image/jpeg"
        assert image.size == (t.width, t.height)
        assert 0x0112 not in image.getexif()  # metadata dropped with the orientation applied


def test_exif_orientation_is_applied() -> None:
    [thumb] = thumbnails.make(imagefiles.marked(400, 200), [128], MP, DECODED)
    assert (thumb.width, thumb.height) == (64, 128)  # portrait once rotated
    image = _decode(thumb).convert("RGB")
    top, bottom = image.getpixel((32, 10)), image.getpixel((32, 118))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60, f"top should be red, is {top}"
    assert bottom[2] > 200 and bottom[0] < 60, f"bottom should be blue, is {bottom}"


def test_small_images_are_never_enlarged_and_alpha_is_kept() -> None:
    small = imagefiles.photo(100, 50, fmt="PNG", mode="RGBA")
    thumbs = thumbnails.make(small, [128, 512], MP, DECODED)
    assert [(t.width, t.height, t.media_type) for t in thumbs] == [
        (100, 50, "image/webp"),
        (100, 50, "image/webp"),
    ]
    assert _decode(thumbs[0]).mode == "RGBA"


def test_a_jpeg_is_decoded_at_reduced_scale() -> None:
    assert thumbnails.draft_target(1632, 1224, 512) == (512, 384)
    src = Image.open(io.BytesIO(imagefiles.photo(1632, 1224)))
    src.draft("RGB", thumbnails.draft_target(1632, 1224, 512))
    assert src.size == (816, 612)  # libjpeg decoded at 1/2 scale, not 1632x1224


@pytest.mark.parametrize(
    "data",
    [
        b"garbage",
        imagefiles.truncated(),
        imagefiles.bomb(8000, 8000),
        imagefiles.photo(8, 8, fmt="BMP"),
    ],
    ids=["garbage", "truncated", "bomb", "bmp"],
)
def test_bad_images_at_the_resizer_say_why(data: bytes) -> None:
    with pytest.raises(thumbnails.NotAnImage):
        thumbnails.make(data, [128], MP, DECODED)


def test_a_png_that_decodes_past_the_budget_is_refused_from_its_header_at_both_ends() -> None:
    """Issue 11: 131 KB of PNG, 6300x6300, under the pixel limit; decoding it would cost
    159 MiB and ~1.3 CPU-s. Refused unread by the gateway (413) and the resizer alike."""
    data = imagefiles.heavy_png(6300)
    assert len(data) < 200_000 and MP > 6300 * 6300
    started = time.process_time()
    with pytest.raises(checks.BadImage, match="decodes to 151 MiB") as refused:
        intake.checked(data, MP, DECODED)
    assert refused.value.status == 413
    with pytest.raises(thumbnails.NotAnImage, match="IMAGE_MAX_DECODED_BYTES"):
        thumbnails.measure(data, [128, 512], MP, DECODED)
    with pytest.raises(thumbnails.NotAnImage, match="IMAGE_MAX_DECODED_BYTES"):
        thumbnails.make(data, [128, 512], MP, DECODED)
    assert time.process_time() - started < 0.1  # header only: no pixel was decoded


def test_what_decoding_costs_is_known_before_the_bytes_are_fetched() -> None:
    """A JPEG is decoded reduced (the gateway at 1/8, the resizer to the biggest thumbnail),
    so a 12 MP photo is light; a PNG decodes whole, at 4 bytes a pixel."""
    jpeg, png = imagefiles.photo(4000, 3000), imagefiles.photo(1000, 800, fmt="PNG")
    for data, media, w, h in ((jpeg, "image/jpeg", 4000, 3000), (png, "image/png", 1000, 800)):
        measured = thumbnails.measure(data, [128, 512], MP, DECODED)
        assert thumbnails.estimate(w, h, media, 512) == measured
    assert thumbnails.measure(jpeg, [128, 512], MP, DECODED) == 1000 * 750 * 4  # 1/4 scale
    assert thumbnails.measure(png, [128, 512], MP, DECODED) == 1000 * 800 * 4
    assert intake.checked(jpeg, MP, 4 * 2**20).width == 4000  # 500x375 decoded: under 4 MiB
    with pytest.raises(checks.BadImage):
        intake.checked(png, MP, 2**20)  # 3 MiB decoded: over 1 MiB


# --- stored without metadata (services/gateway/images/metadata.py; test_metadata_corpus.py) ---


def test_an_upload_with_no_metadata_is_stored_byte_for_byte() -> None:
    for data in (
        imagefiles.photo(64, 48),
        imagefiles.photo(64, 48, fmt="PNG"),
        imagefiles.photo(64, 48, fmt="WEBP"),
        imagefiles.photo(64, 48, fmt="GIF"),
    ):
        assert accepted(data)[0] == data


def test_a_jpeg_keeps_its_orientation_alone_and_its_pixels_as_they_were() -> None:
    data = imagefiles.photo(80, 40, orientation=6, gps=True)
    assert b"SN-123456" in data and b"Dovecam" in data
    out, info = accepted(data)
    img = Image.open(io.BytesIO(out))
    assert dict(img.getexif()) == {0x0112: 6}  # only the orientation: no camera, no time
    assert "xmp" not in img.info and b"GPSLatitude" not in out
    assert img.size == (80, 40) and (info.width, info.height) == (40, 80)  # shown portrait
    assert img.tobytes() == Image.open(io.BytesIO(data)).tobytes()  # not decoded again


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_a_png_or_webp_is_turned_the_way_its_exif_said_and_loses_it(fmt: str) -> None:
    data = imagefiles.marked(400, 200, fmt=fmt)  # left red, right blue, orientation 6
    out, info = accepted(data)
    img = Image.open(io.BytesIO(out)).convert("RGB")
    assert img.size == (200, 400) == (info.width, info.height)
    assert not img.getexif() and "exif" not in img.info
    top, bottom = img.getpixel((100, 20)), img.getpixel((100, 380))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 150 > top[2] and bottom[2] > 150 > bottom[0]  # red above, blue below


def test_thumbnails_of_a_stored_jpeg_come_out_upright() -> None:
    """The original keeps its orientation tag instead of being turned: the resizer turns
    what it decodes by it."""
    stored, _ = accepted(imagefiles.marked(400, 200))  # left red, right blue, orientation 6
    [thumb] = thumbnails.make(stored, [128], MP, DECODED)
    assert (thumb.width, thumb.height) == (64, 128)
    image = _decode(thumb).convert("RGB")
    top, bottom = image.getpixel((32, 10)), image.getpixel((32, 118))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60, f"top should be red, is {top}"
    assert bottom[2] > 200 and bottom[0] < 60, f"bottom should be blue, is {bottom}"
    assert not _decode(thumb).getexif()


def test_thumbnails_carry_no_comment_of_the_original() -> None:
    """Issue 21: a JPEG's COM and a GIF's comment were copied into every thumbnail (Pillow
    copies ``info`` to each image made from another, and its JPEG encoder writes
    ``info["comment"]``)."""
    for fmt in ("JPEG", "GIF"):
        out = io.BytesIO()
        Image.new("RGB", (300, 200), "teal").save(out, fmt, comment=b"dove-comment-7f3a")
        assert b"dove-comment-7f3a" in out.getvalue()
        for thumb in thumbnails.make(out.getvalue(), [128, 512], MP, DECODED):
            assert b"dove-comment-7f3a" not in thumb.data, (fmt, thumb.size)
            assert "comment" not in _decode(thumb).info


def test_a_thumbnail_keeps_an_rgb_colour_profile_only() -> None:
    """A thumbnail is RGB: a CMYK original's profile would misdescribe its pixels."""
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk = srgb[:16] + b"CMYK" + srgb[20:]  # what a CMYK profile's header says
    for mode, icc, kept in (("RGB", srgb, srgb), ("CMYK", cmyk, None)):
        out = io.BytesIO()
        Image.new(mode, (300, 200)).save(out, "JPEG", icc_profile=icc)
        for thumb in thumbnails.make(out.getvalue(), [128], MP, DECODED):
            assert _decode(thumb).info.get("icc_profile") == kept, mode
