"""Originals without location: what an upload's metadata keeps, and what it loses.

A phone photo carries where it was taken (the EXIF GPS block, often XMP too) and who took
it (serial numbers, the owner's name, maker notes). The stored original is public, so:

- an upload with no metadata at all is stored byte for byte, as uploaded;
- otherwise it is written again by Pillow with only: the ICC colour profile, and these EXIF
  fields: camera make and model, lens make and model, the date and time taken (with its
  time zone offset), exposure time, f-number, ISO, exposure bias, flash, focal length (and
  its 35 mm equivalent), colour space, resolution. Everything else goes: the GPS block,
  maker notes, serial numbers, the owner's name, the unique image id, XMP, IPTC/Photoshop
  blocks, comments, PNG text chunks, thumbnails embedded in the EXIF;
- the EXIF orientation is applied to the pixels (the image is stored upright) and the tag
  dropped, so every viewer shows it the same way;
- a JPEG is encoded again with its own quantisation tables and chroma subsampling (no
  visible loss beyond one more generation); PNG is lossless; WebP is encoded again at
  quality 90 (lossless if it was); GIF is stored as uploaded (it has no EXIF; its comment
  and application blocks are kept: a GIF with an XMP block would keep it).

Pure: bytes in, bytes out; the gateway runs it in a thread with the upload's other checks.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, ImageOps, JpegImagePlugin

from services.gateway.images import FORMATS, BadImage, ImageInfo

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
ORIENTATION = 0x0112
KEPT_BASE = {
    0x010F: "Make",
    0x0110: "Model",
    0x0132: "DateTime",
    0x011A: "XResolution",
    0x011B: "YResolution",
    0x0128: "ResolutionUnit",
}
KEPT_EXIF = {
    0x829A: "ExposureTime",
    0x829D: "FNumber",
    0x8827: "ISOSpeedRatings",
    0x9003: "DateTimeOriginal",
    0x9004: "DateTimeDigitized",
    0x9010: "OffsetTime",
    0x9011: "OffsetTimeOriginal",
    0x9012: "OffsetTimeDigitized",
    0x9204: "ExposureBiasValue",
    0x9209: "Flash",
    0x920A: "FocalLength",
    0xA001: "ColorSpace",
    0xA405: "FocalLengthIn35mmFilm",
    0xA433: "LensMake",
    0xA434: "LensModel",
}
# Metadata blocks Pillow reports in ``Image.info``; any of them means a rewrite.
CARRIERS = ("exif", "xmp", "XML:com.adobe.xmp", "photoshop", "comment", "icc_profile")
STILL_FORMATS = ("JPEG", "PNG", "WEBP")


def has_metadata(img: Image.Image) -> bool:
    if any(key in img.info for key in CARRIERS if key != "icc_profile"):
        return True
    if getattr(img, "text", None):  # PNG tEXt/zTXt/iTXt chunks
        return True
    applist = getattr(img, "applist", [])  # JPEG APPn and COM segments beyond JFIF/ICC
    return any(marker not in ("APP0", "APP2") for marker, _ in applist)


def kept_exif(img: Image.Image) -> Image.Exif:
    source = img.getexif()
    out = Image.Exif()
    for tag in KEPT_BASE:
        if tag in source:
            out[tag] = source[tag]
    inner = source.get_ifd(EXIF_IFD)
    kept = {tag: inner[tag] for tag in KEPT_EXIF if tag in inner}
    if kept:
        out[EXIF_IFD] = kept
    return out


def clean(data: bytes, info: ImageInfo) -> tuple[bytes, ImageInfo]:
    """The bytes to store and their facts: ``data`` itself when it carries no metadata.
    ``BadImage`` when the metadata cannot be read (the pixels decoded: ``images.inspect``)."""
    try:
        return _clean(data, info)
    except (OSError, SyntaxError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise BadImage(f"the image's metadata is damaged: {exc}") from None


def _clean(data: bytes, info: ImageInfo) -> tuple[bytes, ImageInfo]:
    with Image.open(io.BytesIO(data), formats=list(FORMATS)) as img:
        if img.format not in STILL_FORMATS or not has_metadata(img):
            return data, info
        animated = getattr(img, "n_frames", 1) > 1
        if animated:  # an animated PNG or WebP: frames kept as they are, metadata dropped
            return _resave_animated(img), info
        img.load()
        exif = kept_exif(img)
        icc = img.info.get("icc_profile")
        options: dict[str, Any] = {"exif": exif.tobytes()}
        if icc:
            options["icc_profile"] = icc
        if img.format == "JPEG":
            options["qtables"] = getattr(img, "quantization", None) or "web_high"
            options["subsampling"] = JpegImagePlugin.get_sampling(img)
            options["optimize"] = True
        elif img.format == "WEBP":
            lossless = img.info.get("lossless", False)
            options.update(lossless=bool(lossless), quality=90 if not lossless else 100)
        fmt = img.format
        upright = ImageOps.exif_transpose(img)
        if fmt == "JPEG" and options["subsampling"] == -1:
            del options["subsampling"]
        out = io.BytesIO()
        upright.save(out, fmt, **options)
    cleaned = out.getvalue()
    return cleaned, ImageInfo(info.media_type, upright.width, upright.height, len(cleaned))


def _resave_animated(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, img.format, save_all=True)
    return out.getvalue()
