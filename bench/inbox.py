"""A question answered on the bus: a signed-in page is drawn with the person's inbox, which
the gateway asks of the notifier (``commands/notifier/inbox``, answered on
``replies/notifier/<request>``). Times the page signed out (asks nothing), signed in, and
``GET /api/inbox``, against a gateway and a notifier on a private Mosquitto."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import heading, median, percentile, private_broker
from bench.servers import wait_http
from dovecote.project import PROJECT
from dovecote.tools.broker import free_port
from dovecote_testing.gateway import DEMO_PASSWORD, signed_in

REQUESTS = int(os.environ.get("BENCH_INBOX_REQUESTS", "200"))
SERVICES = ("notifier", "gateway")


async def timed(http: aiohttp.ClientSession, url: str) -> list[float]:
    out = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        async with http.get(url) as r:
            await r.read()
            assert r.status == 200, r.status
        out.append((time.perf_counter() - started) * 1000)
    return out


async def measure() -> dict[str, Any]:
    with private_broker() as broker, tempfile.TemporaryDirectory(prefix="dovecote-inbox-") as d:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "MQTT_URL": broker.url,
            "DOVECOTE_ROOT": f"bi{uuid.uuid4().hex[:6]}",
            "PORT": str(port),
            "PUBLIC_URL": url,
            "DOVECOTE_DATA_DIR": d,
            "DOVECOTE_SESSION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "DEMO_PASSWORD": DEMO_PASSWORD,
            "LOG_LEVEL": "WARNING",
            "RATE_COMMANDS_PERSON": "0",
        }
        procs = []
        try:
            for name in SERVICES:
                with (Path(d) / f"{name}.log").open("wb") as log:
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
            await asyncio.sleep(1.0)  # both subscribed
            async with aiohttp.ClientSession() as anon:
                signed_out = await timed(anon, f"{url}/")
            async with await signed_in(url, "grace") as http:
                await timed(http, f"{url}/api/inbox")  # warm up
                page = await timed(http, f"{url}/")
                inbox = await timed(http, f"{url}/api/inbox")
        finally:
            for p in procs:
                if p.returncode is None:
                    p.terminate()
            for p in procs:
                await p.wait()
    return {"signed out": signed_out, "signed in": page, "inbox": inbox}


def report(r: dict[str, Any]) -> None:
    heading(f"A page's inbox, asked of the notifier on the bus: {REQUESTS} requests each")
    for label, key in (
        ("GET / signed out (no question)", "signed out"),
        ("GET / signed in (page + inbox)", "signed in"),
        ("GET /api/inbox", "inbox"),
    ):
        v = r[key]
        print(f"  {label:<34} p50 {median(v):6.1f} ms   p90 {percentile(v, 90):6.1f} ms")
