"""What decoding an image really takes, against what the gateway's budget reserves for it.

The budget is only as good as the costs it is given (``Stripped.decode_bytes``, read from
headers, and ``metadata.turning_bytes``): each case decodes one image as the gateway does
(``intake.decoded``) in a fresh process with the gateway's allocator setting, and reads
how far its resident memory rose (``VmHWM`` after a reset of the peak, /proc/self/clear_refs).
The rise must be within the reservation; and, where the model is not cautious on purpose,
not far under it (a reservation several times too large would refuse images for nothing).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from textwrap import dedent
from typing import Any

import PIL
import pytest
from PIL import Image

from dovecote.project import PROJECT

pytestmark = pytest.mark.slow

MiB = 2**20
SLACK = 4 * MiB  # the interpreter's own allocations around a decode

MEASURE = dedent(
    """
    import json, sys
    from PIL import Image
    from dovecote import heap
    from services.gateway.images import intake, metadata
    from services.gateway.images.containers import tiff

    heap.return_large_blocks()  # as the gateway does before it decodes anything
    Image.init()  # every codec loaded (as in a gateway that has decoded before), not measured
    with open(sys.argv[1], "rb") as file:
        data = file.read()

    found = intake.checked(data, 10**9, 2**40)
    reserved = found.decode_bytes + metadata.turning_bytes(found)

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak is now what is resident
    intake.decoded(found)
    print(json.dumps({"reserved": reserved, "used": status("VmHWM") - before}))
    """
)


FLIP = Image.Transpose.FLIP_TOP_BOTTOM


def make_image(
    fmt: str, width: int, height: int, orientation: int, frames: int, options: dict[str, Any]
) -> bytes:
    """The image a case decodes: gradients (so each encoder has work to do), ``frames`` of
    them, with an EXIF orientation. Made in this process, not the measured one."""
    images = [
        Image.merge("RGB", [
            Image.linear_gradient("L").resize((width, height)),
            Image.radial_gradient("L").resize((width, height)).rotate(n * 90),
            Image.linear_gradient("L").resize((width, height)).transpose(FLIP),
        ])
        for n in range(frames)
    ]  # fmt: skip
    options = dict(options)
    if frames > 1:
        options.update(save_all=True, append_images=images[1:])
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif
    out = io.BytesIO()
    images[0].save(out, fmt, **options)
    return out.getvalue()


@pytest.fixture(scope="session")
def image_folder(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the cases' images are kept: pytest's cache (between runs: encoding a 4000 x
    4000 PNG or a lossless WebP takes longer than the decode measured), else this run's."""
    cache = getattr(pytestconfig, "cache", None)
    return cache.mkdir("decode-budget-images") if cache else tmp_path_factory.mktemp("images")


def image_file(folder: Path, case: str) -> Path:
    """The case's image, made once: named by its recipe and Pillow's version."""
    fmt, width, height, orientation, frames, options, _ = CASES[case]
    recipe = json.dumps([fmt, width, height, orientation, frames, options, PIL.__version__])
    path = folder / f"{case}-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}"
    if not path.exists():
        made = path.with_suffix(f".{os.getpid()}.part")  # xdist workers may make it at once
        made.write_bytes(make_image(fmt, width, height, orientation, frames, options))
        made.replace(path)
    return path


Case = tuple[str, int, int, int, int, dict[str, Any], bool]
CASES: dict[str, Case] = {
    # format, width, height, EXIF orientation, frames, Pillow's save options; careful: the
    # model may be cautious by design (a GIF is counted at 4 bytes a pixel, uses 1)
    "jpeg-baseline": ("JPEG", 4000, 4000, 1, 1, {}, False),
    "jpeg-progressive-4:2:0": ("JPEG", 4000, 4000, 1, 1, {"progressive": True}, True),
    "jpeg-progressive-4:4:4": (
        "JPEG", 3000, 3000, 1, 1, {"progressive": True, "subsampling": 0}, True
    ),
    "png-rgb": ("PNG", 4000, 3000, 1, 1, {}, True),
    "png-animated": ("PNG", 2000, 2000, 1, 3, {}, True),
    "gif": ("GIF", 4000, 3000, 1, 1, {}, False),
    "webp-lossy": ("WEBP", 3000, 2000, 1, 1, {"quality": 80}, True),
    "webp-lossless": ("WEBP", 2000, 2000, 1, 1, {"lossless": True}, True),
    "webp-animated": ("WEBP", 2000, 1500, 1, 3, {}, True),
    "png-turned": ("PNG", 3000, 2000, 6, 1, {}, True),
    "webp-lossy-turned": ("WEBP", 2000, 2000, 6, 1, {"quality": 80}, True),
    "webp-lossless-turned": ("WEBP", 1500, 1500, 8, 1, {"lossless": True}, True),
}  # fmt: skip


@pytest.mark.fresh_process  # each case measures a new interpreter: make test, not make check
@pytest.mark.parametrize("case", list(CASES))
def test_decoding_takes_no_more_than_the_budget_reserves(case: str, image_folder: Path) -> None:
    tight = CASES[case][-1]
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(image_file(image_folder, case))],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    reserved, used = figures["reserved"], figures["used"]
    print(f"{case}: reserved {reserved / MiB:.1f} MiB, used {used / MiB:.1f} MiB")
    assert used <= reserved + SLACK, f"{case}: used {used / MiB:.1f} MiB"
    if tight:
        assert used >= reserved / 3, f"{case}: reserved {reserved / MiB:.1f} MiB"
