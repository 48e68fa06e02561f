"""The metadata corpus (tests/metadatafiles.py) through real processes: every format, still
and animated, each file with every kind of metadata its format carries, uploaded to a real
gateway; the original it serves and every thumbnail the resizer made carry none of it,
byte by byte, and the original's pixels are the uploaded ones (issue 21)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests import metadatafiles as corpus
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
