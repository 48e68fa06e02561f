"""A corpus of images carrying metadata, with a marker planted in each kind (issue 21).

Every accepted format, still and animated (``VARIANTS``), and every kind of metadata it can
carry (``KINDS``): each kind adds its blocks to a plain file written by Pillow, and plants a
marker, a byte string found nowhere else (``dove-<kind>-7f3a``, a fake GPS position among
them), so a stored file can be searched for what it must not hold, byte by byte. Blocks
Pillow cannot write are built here by hand, from the formats' specifications, without the
gateway's parsers (``services/gateway/images/containers``), which are what is tested.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageCms, ImageDraw, PngImagePlugin

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
GPS_IFD = 0x8825
SIGNATURE_PNG = b"\x89PNG\r\n\x1a\n"


def marker(kind: str) -> bytes:
    return f"dove-{kind}-7f3a".encode()


@dataclass(frozen=True)
class Variant:
    name: str
    fmt: str  # Pillow's
    animated: bool = False
    options: tuple[tuple[str, object], ...] = ()
    mode: str = "RGB"


VARIANTS = {
    v.name: v
    for v in (
        Variant("jpeg", "JPEG"),
        Variant("jpeg-progressive", "JPEG", options=(("progressive", True),)),
        Variant("jpeg-restarts", "JPEG", options=(("restart_marker_blocks", 2),)),
        Variant("jpeg-cmyk", "JPEG", mode="CMYK"),  # Adobe's APP14 says how to read it
        Variant("png", "PNG"),
        Variant("png-animated", "PNG", animated=True),
        Variant("gif", "GIF"),
        Variant("gif-animated", "GIF", animated=True),
        Variant("webp", "WEBP", options=(("quality", 80),)),
        Variant("webp-lossless", "WEBP", options=(("lossless", True),)),
        Variant("webp-animated", "WEBP", animated=True),
    )
}


def frames(n: int = 3, size: tuple[int, int] = (96, 64)) -> list[Image.Image]:
    out = []
    for i in range(n):
        image = Image.new("RGB", size, (40 + 60 * i, 90, 200 - 50 * i))
        ImageDraw.Draw(image).ellipse((10 * i, 5, 40 + 10 * i, 50), fill=(250, 220, 30))
        out.append(image)
    return out


def plain(variant: Variant, **pillow: object) -> bytes:
    """The variant as Pillow writes it, with ``pillow``'s metadata options if any."""
    images = [f.convert(variant.mode) for f in frames(3 if variant.animated else 1)]
    options: dict[str, object] = dict(variant.options) | pillow
    if variant.animated:
        options |= {"save_all": True, "append_images": images[1:], "duration": 80, "loop": 0}
    out = io.BytesIO()
    images[0].save(out, variant.fmt, **options)
    return out.getvalue()


# --- the blocks of each format, by hand --------------------------------------------------


def jpeg_segment(marker_code: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker_code, len(body) + 2) + body


def jpeg_after_soi(data: bytes, *segments: bytes) -> bytes:
    """``segments`` right after SOI and JFIF's APP0 (if the file starts with one)."""
    at = 2
    if data[2:4] == b"\xff\xe0":
        at = 4 + struct.unpack_from(">H", data, 4)[0]
    return data[:at] + b"".join(segments) + data[at:]


def jpeg_before_eoi(data: bytes, *segments: bytes) -> bytes:
    assert data.endswith(b"\xff\xd9")
    return data[:-2] + b"".join(segments) + data[-2:]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_after_ihdr(data: bytes, *chunks: bytes) -> bytes:
    at = 8 + 12 + 13
    assert data[12:16] == b"IHDR"
    return data[:at] + b"".join(chunks) + data[at:]


def png_before_iend(data: bytes, *chunks: bytes) -> bytes:
    iend = png_chunk(b"IEND", b"")
    assert data.endswith(iend)
    return data[: -len(iend)] + b"".join(chunks) + iend


def gif_sub_blocks(payload: bytes) -> bytes:
    parts = [payload[i : i + 255] for i in range(0, len(payload), 255)]
    return b"".join(bytes([len(p)]) + p for p in parts) + b"\x00"


def gif_after_header(data: bytes, *blocks: bytes) -> bytes:
    """``blocks`` after the screen descriptor and its colour table."""
    flags = data[10]
    at = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    return data[:at] + b"".join(blocks) + data[at:]


def gif_before_trailer(data: bytes, *blocks: bytes) -> bytes:
    assert data.endswith(b"\x3b")
    return data[:-1] + b"".join(blocks) + b"\x3b"


def gif_application(ident: bytes, payload: bytes) -> bytes:
    assert len(ident) == 11
    return b"\x21\xff\x0b" + ident + gif_sub_blocks(payload)


def riff_chunk(code: bytes, payload: bytes) -> bytes:
    return code + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)


def riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    found, pos, end = [], 12, 8 + struct.unpack_from("<I", data, 4)[0]
    while pos < end:
        code, size = struct.unpack_from("<4sI", data, pos)
        found.append((code, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return found


def riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(riff_chunk(c, p) for c, p in chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_extended(data: bytes) -> list[tuple[bytes, bytes]]:
    """The file's chunks, made extended (VP8X first) if it was simple."""
    chunks = riff_chunks(data)
    if chunks[0][0] == b"VP8X":
        return chunks
    with Image.open(io.BytesIO(data)) as image:
        w, h = image.size
    canvas = (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return [(b"VP8X", b"\x00\x00\x00\x00" + canvas), *chunks]


def webp_with(data: bytes, *chunks: tuple[bytes, bytes], flags: int = 0) -> bytes:
    found = webp_extended(data)
    header = found[0][1]
    found[0] = (b"VP8X", bytes([header[0] | flags]) + header[1:])
    return riff([*found, *chunks])


# --- the kinds of metadata -------------------------------------------------------------


def gps_exif(kind: str) -> bytes:
    """EXIF where and who: a GPS block (51 deg 30' 26" N, its datum the marker), the
    camera, the artist (the marker), a serial number."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Dovecam", "D-1"
    exif[0x013B] = marker(kind).decode()  # Artist
    datum = marker(kind + "-gps").decode()  # GPSMapDatum
    exif[GPS_IFD] = {1: "N", 2: (51.0, 30.0, 26.0), 3: "W", 4: (0.0, 7.0, 39.0), 18: datum}
    exif[0x8769] = {0xA431: "SN-123456"}
    return exif.tobytes()


def xmp(kind: str) -> bytes:
    return (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
        b'22-rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" '
        b'exif:GPSLatitude="51,30.43N" exif:GPSLongitude="' + marker(kind) + b'"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )


def iptc(kind: str) -> bytes:
    """Photoshop image resources (APP13): resource 0x0404, IPTC-IIM, a caption (2:120)."""
    caption = b"\x1c\x02\x78" + struct.pack(">H", len(marker(kind))) + marker(kind)
    caption += b"\x00" * (len(caption) & 1)
    return (
        b"Photoshop 3.0\x00"
        + b"8BIM"
        + b"\x04\x04"
        + b"\x00\x00"
        + struct.pack(">I", len(caption))
        + caption
    )


Kind = Callable[[bytes, str], bytes]  # (file, kind's name) -> the file with that kind in it


def _jpeg_exif(data: bytes, kind: str) -> bytes:
    return jpeg_after_soi(data, jpeg_segment(0xE1, b"Exif\x00\x00" + gps_exif(kind)))


def _jpeg_xmp(data: bytes, kind: str) -> bytes:
    return jpeg_after_soi(data, jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp(kind)))


def _jpeg_extended_xmp(data: bytes, kind: str) -> bytes:
    body = b"http://ns.adobe.com/xmp/extension/\x00" + b"0" * 32 + struct.pack(">II", 99, 0)
    return jpeg_after_soi(data, jpeg_segment(0xE1, body + xmp(kind)))


def _jpeg_iptc(data: bytes, kind: str) -> bytes:
    return jpeg_after_soi(data, jpeg_segment(0xED, iptc(kind)))


def _jpeg_comment(data: bytes, kind: str) -> bytes:
    return jpeg_after_soi(data, jpeg_segment(0xFE, marker(kind)))


def _jpeg_comment_between_scans(data: bytes, kind: str) -> bytes:
    """A COM before the last scan's end: a progressive JPEG has tables between scans."""
    last_sos = data.rindex(b"\xff\xda")
    return data[:last_sos] + jpeg_segment(0xFE, marker(kind)) + data[last_sos:]


def _jpeg_other_apps(data: bytes, kind: str) -> bytes:
    """APP2 MPF and FlashPix, APP3..APP15 but APP14: any application's segment."""
    # An MP index (a TIFF IFD: the number of images, 1, and its entry), then the marker.
    index = b"MM\x00\x2a\x00\x00\x00\x08\x00\x02" + struct.pack(">HHII", 0xB001, 4, 1, 1)
    index += struct.pack(">HHII", 0xB002, 7, 16, 38) + b"\x00" * 4
    index += struct.pack(">LLLHH", 0x20030000, 0, 0, 0, 0)
    segments = [jpeg_segment(0xE2, b"MPF\x00" + index + marker(kind + "-mpf"))]
    segments.append(jpeg_segment(0xE2, b"FPXR\x00" + marker(kind + "-fpxr")))
    segments += [jpeg_segment(code, marker(f"{kind}-{code:x}")) for code in range(0xE3, 0xF0)]
    return jpeg_after_soi(data, *(s for s in segments if s[1] != 0xEE))


def _jpeg_jfif_thumbnail(data: bytes, kind: str) -> bytes:
    """JFIF's own thumbnail (4x1 RGB pixels: the marker's first 12 bytes), and a JFXX; in
    place of the file's JFIF header, or first if it has none (a CMYK JPEG)."""
    head, rest = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01", data[2:]
    if data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\x00":
        head = data[6:18]  # JFIF, version, units, densities
        rest = data[4 + struct.unpack_from(">H", data, 4)[0] :]
    thumb = jpeg_segment(0xE0, head + b"\x04\x01" + marker(kind)[:12])
    jfxx = jpeg_segment(0xE0, b"JFXX\x00\x13" + marker(kind + "-jfxx"))
    return data[:2] + thumb + jfxx + rest


def _jpeg_after_end(data: bytes, kind: str) -> bytes:
    """What follows EOI: MPF's second image (a JPEG with its own EXIF), then a page."""
    second = _jpeg_exif(plain(VARIANTS["jpeg"]), kind + "-second")
    return _after_end(data + second, kind)


def _after_end(data: bytes, kind: str) -> bytes:
    """A page after the image's end (its last byte: EOI, IEND, the trailer, the RIFF)."""
    return data + b"<html>" + marker(kind) + b"</html>"


def _jpeg_icc_and_adobe(data: bytes, _: str) -> bytes:
    """Kept, not planted: the ICC profile and Adobe's colour transform."""
    icc = jpeg_segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + ICC)
    adobe = jpeg_segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")
    return jpeg_after_soi(data, icc, adobe)


def _png_text(data: bytes, kind: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", marker(kind + "-t").decode())
    info.add_text("Location", marker(kind + "-z").decode(), zip=True)
    info.add_itxt("Author", marker(kind + "-i").decode(), lang="en", tkey="Auteur")
    info.add_itxt("Title", marker(kind + "-iz").decode(), zip=True)
    chunks = [png_chunk(kind_, body) for kind_, body, *_ in info.chunks]
    return png_before_iend(data, *chunks)


def _png_exif(data: bytes, kind: str) -> bytes:
    return png_after_ihdr(data, png_chunk(b"eXIf", gps_exif(kind)))


def _png_xmp(data: bytes, kind: str) -> bytes:
    body = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp(kind)
    return png_before_iend(data, png_chunk(b"iTXt", body))


def _png_other_chunks(data: bytes, kind: str) -> bytes:
    """tIME, pHYs, sPLT, a private chunk."""
    chunks = [
        png_chunk(b"tIME", struct.pack(">HBBBBB", 2026, 11, 29, 7, 0, 0)),
        png_chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
        png_chunk(b"sPLT", marker(kind + "-splt") + b"\x00\x08"),
        png_chunk(b"prVt", marker(kind + "-private")),
    ]
    return png_after_ihdr(data, *chunks)


def _png_icc(data: bytes, kind: str) -> bytes:
    """Kept, its free-text name (the marker) replaced."""
    body = marker(kind) + b"\x00\x00" + zlib.compress(ICC)
    return png_after_ihdr(data, png_chunk(b"iCCP", body))


def _gif_comment(data: bytes, kind: str) -> bytes:
    comment = b"\x21\xfe" + gif_sub_blocks(marker(kind))
    return gif_before_trailer(gif_after_header(data, comment), comment)


def _gif_xmp(data: bytes, kind: str) -> bytes:
    """XMP's GIF embedding: the packet raw, then its 258-byte 'magic trailer' that makes it
    read as sub-blocks (XMP specification part 3)."""
    trailer = bytes([1, *range(255, -1, -1), 0])
    block = b"\x21\xff\x0bXMP DataXMP" + xmp(kind) + trailer
    return gif_after_header(data, block)


def _gif_other_extensions(data: bytes, kind: str) -> bytes:
    """Another application's block, a plain-text extension, NETSCAPE's buffering
    sub-block, a graphic control extension with sub-blocks beyond its own."""
    app = gif_application(b"DOVECOTE1.0", marker(kind + "-app"))
    text = b"\x21\x01\x0c" + b"\x00" * 12 + gif_sub_blocks(marker(kind + "-text"))
    netscape = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x05\x02" + marker(kind)[:4] + b"\x00"
    control = b"\x21\xf9\x04\x00\x00\x00\x00" + gif_sub_blocks(marker(kind + "-control"))
    return gif_after_header(data, app, text, netscape, control)


def _gif_icc(data: bytes, _: str) -> bytes:
    return gif_after_header(data, gif_application(b"ICCRGBG1012", ICC))


def _webp_exif(data: bytes, kind: str) -> bytes:
    return webp_with(data, (b"EXIF", gps_exif(kind)), flags=0x08)


def _webp_xmp(data: bytes, kind: str) -> bytes:
    return webp_with(data, (b"XMP ", xmp(kind)), flags=0x04)


def _webp_unknown(data: bytes, kind: str) -> bytes:
    """An unknown chunk, and one inside each animation frame."""
    chunks = webp_extended(data)
    for n, (code, payload) in enumerate(chunks):
        if code == b"ANMF":
            chunks[n] = (code, payload + riff_chunk(b"DOVE", marker(kind + "-frame")))
    return riff([*chunks, (b"DOVE", marker(kind))])


def _webp_icc(data: bytes, _: str) -> bytes:
    chunks = webp_extended(data)
    header = chunks[0][1]
    return riff([(b"VP8X", bytes([header[0] | 0x20]) + header[1:]), (b"ICCP", ICC), *chunks[1:]])


KINDS: dict[str, dict[str, Kind]] = {
    "JPEG": {
        "exif-gps": _jpeg_exif,
        "xmp": _jpeg_xmp,
        "xmp-extended": _jpeg_extended_xmp,
        "iptc": _jpeg_iptc,
        "comment": _jpeg_comment,
        "comment-between-scans": _jpeg_comment_between_scans,
        "other-app": _jpeg_other_apps,
        "jfif-thumbnail": _jpeg_jfif_thumbnail,
        "after-end": _jpeg_after_end,
        "icc": _jpeg_icc_and_adobe,
    },
    "PNG": {
        "text": _png_text,
        "exif-gps": _png_exif,
        "xmp": _png_xmp,
        "other-chunks": _png_other_chunks,
        "after-end": _after_end,
        "icc": _png_icc,
    },
    "GIF": {
        "comment": _gif_comment,
        "xmp": _gif_xmp,
        "other-extensions": _gif_other_extensions,
        "after-end": _after_end,
        "icc": _gif_icc,
    },
    "WEBP": {
        "exif-gps": _webp_exif,
        "xmp": _webp_xmp,
        "unknown-chunks": _webp_unknown,
        "after-end": _after_end,
        "icc": _webp_icc,
    },
}
KEPT_KINDS = {"icc"}  # carries no marker: kept on purpose


@dataclass(frozen=True)
class Case:
    variant: Variant
    kinds: tuple[str, ...]
    data: bytes

    @property
    def name(self) -> str:
        return f"{self.variant.name}:{'+'.join(self.kinds)}"


@cache
def case(variant_name: str, *kinds: str) -> Case:
    """The variant carrying ``kinds`` (all of its format's when none is named)."""
    variant = VARIANTS[variant_name]
    chosen = kinds or tuple(KINDS[variant.fmt])
    data = plain(variant)
    # The ICC profile first, so later blocks go before it as a camera's would; what
    # follows the image's end last.
    for kind in sorted(chosen, key=lambda k: (k == "after-end", k != "icc")):
        data = KINDS[variant.fmt][kind](data, kind)
    return Case(variant, chosen, data)


def every_case() -> list[tuple[str, str]]:
    """(variant, kind) for every variant and every kind its format carries."""
    return [(v.name, k) for v in VARIANTS.values() for k in KINDS[v.fmt]]


def markers_in(data: bytes) -> list[bytes]:
    """Every planted marker found in ``data`` (each begins ``dove-``)."""
    found, pos = [], data.find(b"dove-")
    while pos >= 0:
        end = data.find(b"-7f3a", pos)
        found.append(data[pos : end + 5] if 0 <= end - pos < 60 else data[pos : pos + 24])
        pos = data.find(b"dove-", pos + 1)
    return found
