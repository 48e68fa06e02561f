"""Upload -> thumbnail in a browser: the image pipeline's latency, end to end.

Gateway, resizer, notifier and points run as their own processes on a private broker. A
websocket client (what a browser's dashboard is) watches the bus through the gateway. For
each upload of a ~2 MP JPEG (made with Pillow here), the clock runs from the POST to the
arrival of the ``image resized`` frame on the socket, then to the thumbnail's bytes
fetched as the page would. Medians over several uploads, after one warm-up.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import random
import re
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import websockets
from PIL import Image, ImageDraw, ImageFilter

from bench.common import heading, median, percentile, private_broker
from bench.servers import wait_http
from dovecote.project import PROJECT
from dovecote.tools.broker import free_port
from dovecote_testing.gateway import DEMO_PASSWORD, cookie_header, signed_in, token_for

UPLOADS = int(os.environ.get("BENCH_UPLOADS", "10"))
WIDTH, HEIGHT = 1632, 1224  # 2.0 MP, a phone photo scaled down
SERVICES = ("resizer", "notifier", "points", "gateway")
_TIMINGS = re.compile(r"fetch (\d+) ms, resize (\d+) ms, store (\d+) ms")


def photo(seed: int) -> bytes:
    """A JPEG with a photo's entropy (shapes, blur, grain), so it decodes like one."""
    rnd = random.Random(seed)
    image = Image.linear_gradient("L").resize((WIDTH, HEIGHT)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(120):
        x, y, s = rnd.randrange(WIDTH), rnd.randrange(HEIGHT), rnd.randrange(20, 400)
        draw.ellipse((x, y, x + s, y + s), fill=tuple(rnd.randrange(256) for _ in range(3)))
    image = image.filter(ImageFilter.GaussianBlur(2))
    grain = Image.effect_noise((WIDTH, HEIGHT), 24).convert("RGB")
    image = Image.blend(image, grain, 0.18)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


async def measure(extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """``extra_env``: more settings for every service (``DATABASE_URL``: bench.stores)."""
    with private_broker() as broker, tempfile.TemporaryDirectory(prefix="dovecote-pipe-") as d:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MQTT_URL": broker.url,
            "DOVECOTE_ROOT": f"bp{uuid.uuid4().hex[:6]}",
            "PORT": str(port),
            "PUBLIC_URL": url,
            "IMAGES_DIR": f"{d}/images",
            "POINTS_DB": f"{d}/points.sqlite3",
            "DOVECOTE_SERVICE_TOKEN": secrets.token_urlsafe(24),
            "LOG_LEVEL": "INFO",
            "DOVECOTE_DATA_DIR": d,  # accounts and inboxes
            "DOVECOTE_SESSION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "DEMO_PASSWORD": DEMO_PASSWORD,
            "RATE_UPLOADS_PERSON": "0",  # one person uploads them all, back to back
            **(extra_env or {}),
        }
        logs = {name: Path(d) / f"{name}.log" for name in SERVICES}
        procs = []
        try:
            for name in SERVICES:
                with logs[name].open("wb") as log:
                    procs.append(
                        await asyncio.create_subprocess_exec(
                            sys.executable,
                            "-m",
                            f"services.{name}",
                            cwd=PROJECT,
                            env=env,
                            stdout=log,
                            stderr=log,
                        )
                    )
            await wait_http(f"{url}/healthz")
            await asyncio.sleep(1.0)  # every service subscribed
            photos = [photo(n) for n in range(UPLOADS + 1)]
            try:
                result = await _run(url, photos)
            except Exception:
                for name, path in logs.items():
                    print(f"--- {name} log ---\n{path.read_text(errors='replace')[-3000:]}")
                raise
            resizer_log = logs["resizer"].read_text(errors="replace")
            result["resizer"] = [tuple(map(int, m)) for m in _TIMINGS.findall(resizer_log)][1:]
        finally:
            for p in procs:
                if p.returncode is None:
                    p.terminate()
            for p in procs:
                await p.wait()
    result["photo_bytes"] = len(photos[0])
    return result


async def _run(url: str, photos: list[bytes]) -> dict[str, Any]:
    arrived: dict[str, float] = {}
    got = asyncio.Event()
    ws_url = url.replace("http://", "ws://") + "/ws"
    token = await token_for(url, "ada", "bench")  # Ada uploads as a script would
    async with await signed_in(url, "grace") as page:  # Grace's page watches
        grace = {"Cookie": cookie_header(page)}
    bearer = {"Authorization": f"Bearer {token}"}
    async with (
        websockets.connect(ws_url, max_size=None, additional_headers=grace) as ws,
        aiohttp.ClientSession(headers=bearer) as http,
    ):

        async def read() -> None:
            async for raw in ws:
                now = time.perf_counter()
                if b"/events/image/resized" in (raw if isinstance(raw, bytes) else raw.encode()):
                    frame = orjson.loads(raw)
                    arrived[frame["activity"]["object"]["id"]] = now
                    got.set()

        reader = asyncio.get_running_loop().create_task(read())
        answered, framed, shown = [], [], []
        for n, data in enumerate(photos):
            form = aiohttp.FormData()
            form.add_field("file", data, filename=f"bench{n}.jpg", content_type="image/jpeg")
            start = time.perf_counter()
            async with http.post(f"{url}/api/images", data=form) as r:
                assert r.status == 201, await r.text()
                image_url = (await r.json())["url"]
            answered_at = time.perf_counter()
            while image_url not in arrived:
                got.clear()
                await asyncio.wait_for(got.wait(), 30)
            async with http.get(f"{image_url}/thumbnails/512") as r:
                assert r.status == 200
                await r.read()
            done = time.perf_counter()
            if n:  # the first upload warms every process up
                answered.append((answered_at - start) * 1000)
                framed.append((arrived[image_url] - start) * 1000)
                shown.append((done - start) * 1000)
            await asyncio.sleep(0.3)
        reader.cancel()
    return {"answered": answered, "framed": framed, "shown": shown}


def report(r: dict[str, Any]) -> None:
    heading(
        f"Upload -> thumbnail in a browser: {WIDTH}x{HEIGHT} JPEG ({r['photo_bytes'] // 1024} KB), "
        f"{len(r['framed'])} uploads, 4 services"
    )
    for label, key in (
        ("upload answered (201)", "answered"),
        ("resized frame on the socket", "framed"),
        ("... and the 512 px thumbnail fetched", "shown"),
    ):
        v = r[key]
        print(
            f"  {label:<38} p50 {median(v):6.1f} ms   p90 {percentile(v, 90):6.1f} ms   "
            f"max {max(v):6.1f} ms"
        )
    print("  goal: resized frame p50 <= 200 ms")
    if r["resizer"]:
        fetch, resize, store = zip(*r["resizer"], strict=True)
        print(
            f"  inside the resizer (p50): fetch {median(list(fetch)):.0f} ms, "
            f"resize {median(list(resize)):.0f} ms, store {median(list(store)):.0f} ms"
        )
