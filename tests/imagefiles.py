"""Image files for tests, made with Pillow on the spot: photos, damaged files, bombs."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image, ImageDraw


def photo(
    width: int = 640,
    height: int = 480,
    *,
    seed: int = 1,
    fmt: str = "JPEG",
    orientation: int | None = None,
    mode: str = "RGB",
    grain: bool = False,
    gps: bool = False,
) -> bytes:
    """A picture with some detail (circles on a colour), optionally with EXIF orientation;
    ``grain`` makes it as big as a real photo of that size (hundreds of KB); ``gps`` adds
    what a phone writes: where (a GPS block, an XMP packet), who (a serial number, the
    owner's name) and the camera and time (which are kept)."""
    rnd = random.Random(seed)
    background = (*(rnd.randrange(40, 200) for _ in range(3)), 255 if mode == "RGBA" else 0)
    image = Image.new(mode, (width, height), background[: len(mode)])
    draw = ImageDraw.Draw(image)
    for _ in range(20):
        x, y, s = rnd.randrange(width), rnd.randrange(height), rnd.randrange(10, 200)
        fill = (*(rnd.randrange(256) for _ in range(3)), 128)
        draw.ellipse((x, y, x + s, y + s), fill=fill[: len(mode)])
    if grain:
        noise = Image.effect_noise((width, height), 40).convert(mode)
        image = Image.blend(image, noise, 0.2)
    out = io.BytesIO()
    image.save(out, fmt, **phone_metadata(orientation, gps))
    return out.getvalue()


def phone_metadata(orientation: int | None, gps: bool) -> dict[str, object]:
    """Pillow's save options for what a phone writes: the orientation, and with ``gps``
    where (a GPS block, an XMP packet), who (a serial number, the owner's name) and the
    camera and time."""
    kwargs: dict[str, object] = {}
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if gps:
        exif[0x010F], exif[0x0110] = "Dovecam", "D-1"
        exif[GPS_IFD] = {1: "N", 2: (51.0, 30.0, 26.0), 3: "W", 4: (0.0, 7.0, 39.0)}
        exif[EXIF_IFD] = {0x9003: "2026:11:29 07:00:00", 0xA430: "Ada L.", 0xA431: "SN-123456"}
        kwargs["xmp"] = XMP_WITH_GPS
    if len(exif):
        kwargs["exif"] = exif
    return kwargs


GPS_IFD, EXIF_IFD = 0x8825, 0x8769
XMP_WITH_GPS = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
    b'22-rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
    b'exif:GPSLatitude="51,30.43N" exif:GPSLongitude="0,7.65W"/></rdf:RDF></x:xmpmeta>'
)


def marked(width: int = 400, height: int = 200, fmt: str = "JPEG") -> bytes:
    """An image whose left half is red and right half blue, stored rotated (orientation 6):
    shown upright, it is ``height`` wide and ``width`` tall, red on top."""
    image = Image.new("RGB", (width, height), (0, 0, 255))
    ImageDraw.Draw(image).rectangle((0, 0, width // 2, height), fill=(255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = io.BytesIO()
    image.save(out, fmt, exif=exif, **({"quality": 95} if fmt != "PNG" else {}))
    return out.getvalue()


def huge(side: int = 6320, *, seed: int = 1, progressive: bool = False) -> bytes:
    """Issue 21's memory amplifier: a phone's JPEG (orientation, location, serial number)
    of ``side`` x ``side`` (39.9 Mpx at 6320, under IMAGE_MAX_PIXELS) with smooth content,
    so it is small (~830 KB baseline, ~480 KB progressive) yet decodes to 152 MiB."""
    red = Image.linear_gradient("L").resize((side, side))
    green = Image.radial_gradient("L").resize((side, side))
    image = Image.merge("RGB", (red, green, red.transpose(Image.Transpose.ROTATE_90)))
    draw, rnd = ImageDraw.Draw(image), random.Random(seed)
    for _ in range(30):
        x, y, s = rnd.randrange(side), rnd.randrange(side), rnd.randrange(side // 60, side // 4)
        draw.ellipse((x, y, x + s, y + s), fill=tuple(rnd.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    metadata = phone_metadata(6, gps=True)
    image.save(out, "JPEG", quality=75, progressive=progressive, **metadata)
    return out.getvalue()


def truncated(data: bytes | None = None) -> bytes:
    data = data or photo(800, 600)
    return data[: len(data) // 2]


def heavy_png(side: int = 6300, seed: int = 0) -> bytes:
    """Issue 11's decode amplifier: ~131 KB of PNG, ``side`` x ``side`` RGB pixels of one
    colour (under IMAGE_MAX_PIXELS at 6300), that decodes to 159 MiB in ~1.3 CPU-s."""
    out = io.BytesIO()
    Image.new("RGB", (side, side), (200, 100, seed % 256)).save(out, "PNG", optimize=True)
    return out.getvalue()


def bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    out = io.BytesIO()
    Image.new("1", (1, 1)).save(out, "PNG")
    png = bytearray(out.getvalue())
    # IHDR is the first chunk: 8-byte signature, length, b"IHDR", 13 bytes of data, CRC.
    assert png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


SCRIPT = b"<html><body><script>window.__xss=7</script></body></html>"


def polyglots() -> dict[str, tuple[bytes, str]]:
    """Files that claim to be images, or are images that are something else too:
    name -> (bytes, the content type a hostile client declares)."""
    jpeg_magic = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
    return {
        "svg with script": (
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.__xss=1">'
            b"<script>window.__xss=2</script></svg>",
            "image/svg+xml",
        ),
        "html behind jpeg magic": (jpeg_magic + SCRIPT, "image/jpeg"),
        "html behind png magic": (b"\x89PNG\r\n\x1a\n" + SCRIPT, "image/png"),
        "javascript behind gif magic": (
            b"GIF89a/*\x01\x00\x01\x00*/=1;window.__xss=3//",
            "image/gif",
        ),
        "html with a jpeg type": (SCRIPT, "image/jpeg"),
        "pdf": (b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\n%%EOF", "image/jpeg"),
    }


def jpeg_with_html(width: int = 320, height: int = 240) -> bytes:
    """A valid JPEG with an HTML page after its end: an image to Pillow and to browsers."""
    return photo(width, height) + SCRIPT
