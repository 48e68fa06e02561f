"""The gateway's memory under hostile uploads, as a real process (issue 21)."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from PIL import Image

from dovecote_testing.plugin import ServiceProcess
from tests import imagefiles
from tests.fixtures import Pipeline
from tests.test_pipeline_process import fetch, for_image

pytestmark = pytest.mark.slow

RSS_LIMIT_MB = 300


def status_mb(service: ServiceProcess, field: str) -> float:
    """One ``/proc/<pid>/status`` figure of the process (VmRSS, VmHWM), in MB."""
    assert service.process is not None
    status = Path(f"/proc/{service.process.pid}/status").read_text()
    [kb] = [line.split()[1] for line in status.splitlines() if line.startswith(f"{field}:")]
    return int(kb) / 1024


class RssSampler:
    """VmRSS every 10 ms while it runs: the curve behind the kernel's VmHWM."""

    def __init__(self, service: ServiceProcess) -> None:
        self.service = service
        self.samples: list[float] = []
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.samples.append(status_mb(self.service, "VmRSS"))
            await asyncio.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self.task is not None
        self.task.cancel()


async def post_image(http: aiohttp.ClientSession, url: str, data: bytes) -> tuple[int, str]:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename="photo.jpg", content_type="image/jpeg")
    async with http.post(f"{url}/api/images", data=form) as r:
        return r.status, await r.text()


@pytest.mark.brokers("mosquitto")  # the gateway's own memory: one broker says it
@pytest.mark.timeout(240)
async def test_six_huge_jpegs_at_once_stay_in_the_gateways_budget_and_a_photo_follows(
    pipeline: Pipeline,
) -> None:
    """Issue 21: one 6320x6320 JPEG took the gateway from 131 to 511 MB and six at once to
    798 MB (the metadata rewrite decoded every pixel). Three baseline and three progressive
    ones (a progressive JPEG needs all its DCT coefficients in memory, 120 MiB here, even
    at 1/8 scale) are all accepted, the gateway's peak RSS (VmHWM, its whole life) stays
    under 300 MB, and a photo uploaded after them is stored, resized and served."""
    p, gateway = pipeline, pipeline.services["gateway"]
    baseline, progressive = await asyncio.gather(
        asyncio.to_thread(imagefiles.huge, progressive=False),
        asyncio.to_thread(imagefiles.huge, progressive=True),
    )
    huge = [baseline, progressive] * 3  # six uploads (making each anew costs 1 CPU-s)
    assert all(len(data) < 1_000_000 for data in huge)
    async with await p.signed_in("ada") as http:
        settled = status_mb(gateway, "VmRSS")
        started = time.monotonic()
        with RssSampler(gateway) as sampler:
            answers = await asyncio.gather(*(post_image(http, p.url, data) for data in huge))
        took = time.monotonic() - started
        assert [status for status, _ in answers] == [201] * 6, answers
        await asyncio.sleep(1.0)
        after = status_mb(gateway, "VmRSS")

        status, body = await post_image(http, p.url, imagefiles.photo(1600, 1200, grain=True))
        assert status == 201, body
    url = orjson.loads(body)["url"]
    [resized] = await p.probe.wait_for("events/image/resized", for_image(url), timeout=60)
    assert [t["width"] for t in resized["object"]["preview"]] == [128, 512]
    for link in (url, *(t["href"] for t in resized["object"]["preview"])):
        status, ctype, data = await fetch(link)
        assert (status, ctype) == (200, "image/jpeg"), link
        assert Image.open(io.BytesIO(data)).width in (1600, 512, 128)

    peak = status_mb(gateway, "VmHWM")
    print(
        f"gateway RSS: {settled:.0f} MB settled, sampled peak {max(sampler.samples):.0f} MB "
        f"({len(sampler.samples)} samples over {took:.1f} s), VmHWM {peak:.0f} MB, "
        f"{after:.0f} MB 1 s after; the resizer's VmHWM (not budgeted here) "
        f"{status_mb(p.services['resizer'], 'VmHWM'):.0f} MB"
    )
    assert peak <= RSS_LIMIT_MB, f"the gateway peaked at {peak:.0f} MB"
