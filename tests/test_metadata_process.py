"""The metadata corpus (tests/metadatafiles.py) through real processes: every format, still
and animated, each file with every kind of metadata its format carries, uploaded to a real
gateway; the original it serves and every thumbnail the resizer made carry none of it,
byte by byte, and the original's pixels are the uploaded ones; hostile containers get
their reason (issue 21)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests import metadatafiles as corpus
from tests import test_containers_hostile as hostile
from tests.fixtures import Pipeline
from tests.test_metadata_corpus import assert_bare, pixels, planted
from tests.test_pipeline_process import fetch, for_image, upload

pytestmark = pytest.mark.slow

MEDIA = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp"}


@pytest.mark.brokers("mosquitto")  # the gateway's and the resizer's files: one broker says it
async def test_no_metadata_reaches_a_stored_original_or_a_thumbnail(pipeline: Pipeline) -> None:
    p = pipeline
    cases = [corpus.case(name) for name in corpus.VARIANTS]
    answers = await asyncio.gather(
        *(upload(p, case.data, filename=f"{case.variant.name}.img") for case in cases)
    )
    for case, (status, body) in zip(cases, answers, strict=True):
        assert status == 201, (case.name, body)
        assert len(planted(case.data)) >= 3, case.name
        url = orjson.loads(body)["url"]
        [resized] = await p.probe.wait_for("events/image/resized", for_image(url), timeout=60)
        status, ctype, original = await fetch(url)
        assert (status, ctype) == (200, MEDIA[case.variant.fmt]), case.name
        assert_bare(original, f"the stored {case.name}")
        assert pixels(original) == pixels(case.data), case.name
        previews = resized["object"]["preview"]
        assert len(previews) == 2, case.name
        for link in previews:
            status, _, thumb = await fetch(link["href"])
            assert status == 200, link
            assert_bare(thumb, f"the {link['width']}px thumbnail of {case.name}")
    on_disk = b"".join(f.read_bytes() for f in p.stored_files())
    assert corpus.markers_in(on_disk) == []  # nothing anywhere in the store either


HOSTILE = [
    "jpeg-length-past-the-end",
    "jpeg-lossless",
    "png-length-over-2^31",
    "png-bad-crc",
    "gif-sub-block-past-the-end",
    "webp-chunk-size-overflow",
]


@pytest.mark.brokers("mosquitto")
async def test_hostile_containers_get_their_reason_from_a_real_gateway(
    pipeline: Pipeline,
) -> None:
    """A sample of test_containers_hostile.py's files, and 1.6 MB of empty JPEG comments
    (under this pipeline's 2 MB limit), posted to a real gateway: each refused with its
    reason; nothing stored or announced, and a photo after them is stored."""
    p = pipeline
    cases = [(name, *hostile.CASES[name]) for name in HOSTILE]
    empty = b"\xff\xd8" + b"\xff\xfe\x00\x02" * 400_000 + b"\xff\xd9"
    cases.append(("400,000 empty comments", empty, 400, "over 100,000 segments"))
    for name, data, status, reason in cases:
        answer, text = await upload(p, data)
        assert (answer, reason in text) == (status, True), (name, answer, text)
    assert not [f for f in p.stored_files() if "originals" in f.parts]
    status, _ = await upload(p, corpus.plain(corpus.VARIANTS["jpeg"]))
    assert status == 201
    await p.probe.wait_for("events/image/created")
    assert len(p.probe.on("events/image/created")) == 1
