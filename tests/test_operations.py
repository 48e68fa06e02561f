"""The federation's health as an operator reads it, with real processes and a real broker:
``/metrics`` (checked by Prometheus' own ``promtool`` and by prometheus-client's parser), who
may read it, the operations API, one activity's trace (HTTP and ``dovecote trace``), dead
letters listed and replayed through the gateway, and ``LOG_FORMAT=json``.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from pathlib import Path
from subprocess import PIPE
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from dovecote import activity as act
from dovecote.tools.broker import free_port
from dovecote_testing.gateway import cookie_header
from dovecote_testing.plugin import Probe, StartService, wait_until
from tests.fixtures import Federation, dovecote_cli, start_poisoned_tally
from tests.services.tally.ledger import open_ledger

METRICS_TOKEN = "scraper-secret-for-tests"
ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    """Every process of these tests reports twice a second; Ada is an operator."""
    return {
        **service_env,
        "DOVECOTE_METRICS_INTERVAL": "0.5",
        "METRICS_TOKEN": METRICS_TOKEN,
        "OPERATORS": "ada",
    }


async def scrape(url: str, **headers: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics", headers=headers) as r:
        return r.status, await r.text()


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float | None:
    found = [
        s.value for s in samples(text) if s.name == name and labels.items() <= s.labels.items()
    ]
    return sum(found) if found else None


async def start_build(fed: Federation) -> str:
    """A build started as Ada; its correlation id (the command's id)."""
    async with await fed.signed_in("ada") as http, http.post(f"{fed.url}/api/builds", json={}) as r:
        assert r.status == 202, await r.text()
        context: str = (await r.json())["id"]
    await fed.probe.wait_for("events/build/succeeded", lambda a: a["context"] == context)
    return context


async def test_metrics_are_served_in_the_prometheus_format_one_series_per_worker(
    federation: Federation,
) -> None:
    context = await start_build(federation)
    async with await federation.signed_in("ada") as http:
        ws = await http.ws_connect(federation.url.replace("http", "ws") + "/ws")
        hello = orjson.loads((await ws.receive()).data)
        await ws.close()
        # The page comes back where it was: a replay, counted by the gateway.
        ws_url = federation.url.replace("http", "ws") + "/ws"
        ws = await http.ws_connect(f"{ws_url}?after={'.'.join(hello['after'])}")
        assert orjson.loads((await ws.receive()).data)["resumed"] is True
        bearer = {"Authorization": f"Bearer {METRICS_TOKEN}", "Host": "10.9.8.7:9100"}
        text = ""

        async def reported() -> bool:
            nonlocal text
            status, text = await scrape(federation.url, **bearer)
            assert status == 200, text
            started = value(
                text,
                "dovecote_messages_handled_total",
                service="builder",
                topic="commands/builder/start",
            )
            sockets = value(text, "dovecote_gateway_sockets_open", service="gateway")
            replays = value(text, "dovecote_gateway_replays_total", service="gateway")
            return started == 1 and sockets == 1 and replays == 1

        for _ in range(100):
            if await reported():
                break
            await asyncio.sleep(0.2)
        assert await reported(), text
        await ws.close()

    # Prometheus' own checker: the exposition format, names, units, help text.
    checker = await asyncio.create_subprocess_exec(
        promtool(), "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(checker.communicate(text.encode()), 30)
    assert checker.returncode == 0, out.decode() + err.decode()

    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["dovecote_messages_handled"].type == "counter"
    assert families["dovecote_handler_seconds"].type == "histogram"
    assert families["dovecote_lag_seconds"].type == "gauge"
    # One series per worker: builder, notifier and gateway, each once per metric.
    workers = Counter(
        (s.labels["service"], s.labels["instance"])
        for s in families["dovecote_handler_seconds"].samples
        if s.name == "dovecote_handler_seconds_count"
    )
    assert set(workers) == {("builder", "1"), ("notifier", "1"), ("gateway", "1")}
    assert set(workers.values()) == {1}
    buckets = [
        s
        for s in families["dovecote_handler_seconds"].samples
        if s.name == "dovecote_handler_seconds_bucket" and s.labels["service"] == "builder"
    ]
    assert buckets[-1].labels["le"] == "+Inf"
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
    count = value(text, "dovecote_handler_seconds_count", service="builder")
    assert count is not None and count == buckets[-1].value >= 1
    assert value(text, "dovecote_connected", service="notifier") == 1
    assert value(text, "dovecote_outbox_messages", service="gateway") == 0
    assert value(text, "dovecote_messages_published_total", service="builder")
    # The gateway heard the whole build (events/# for its browsers).
    progress = value(
        text, "dovecote_messages_handled_total", service="gateway", topic="events/build/progress"
    )
    assert progress == len(federation.probe.on("events/build/progress")) == 9  # 10 %..90 %
    assert context


async def test_a_real_prometheus_scrapes_the_gateway_with_its_token(
    federation: Federation, tmp_path: Path
) -> None:
    """Debian's Prometheus (the package that brings promtool) scrapes ``/metrics`` as an
    operator would set it up: by address (``localhost``, not ``PUBLIC_URL``'s host), with
    ``METRICS_TOKEN`` in a credentials file, every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: `make test` installs Debian's prometheus package")
    await start_build(federation)
    port = urlsplit(federation.url).port
    (tmp_path / "token").write_text(METRICS_TOKEN)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: dovecote\n"
        f"    authorization: {{credentials_file: {tmp_path / 'token'}}}\n"
        f"    static_configs: [{{targets: ['localhost:{port}']}}]\n"
    )
    web = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    server = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{web}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    api = f"http://127.0.0.1:{web}/api/v1/query"
    try:
        async with aiohttp.ClientSession() as http:

            async def query(expr: str) -> list[dict[str, Any]]:
                try:
                    async with http.get(api, params={"query": expr}) as r:
                        if r.status != 200:
                            return []
                        found: list[dict[str, Any]] = (await r.json())["data"]["result"]
                        return found
                except aiohttp.ClientError:  # not listening yet
                    return []

            async def scraped() -> bool:
                started = await query(
                    'dovecote_messages_handled_total{service="builder",'
                    'topic="commands/builder/start"}'
                )
                return bool(started) and started[0]["value"][1] == "1"

            await wait_until_async(scraped, 60)
            [up] = await query('up{job="dovecote"}')
            assert up["value"][1] == "1"
            workers = await query("dovecote_connected")
            assert {w["metric"]["service"] for w in workers} == {"builder", "notifier", "gateway"}
    finally:
        server.terminate()
        await server.wait()
        log.close()


@pytest.mark.brokers("mosquitto")  # who may read what: the broker is not the point
async def test_who_may_read_metrics_and_the_operations_page(federation: Federation) -> None:
    url = federation.url
    assert (await scrape(url))[0] == 401
    assert (await scrape(url, Authorization="Bearer not-the-token"))[0] == 401
    assert (await scrape(url, Authorization=f"Bearer {METRICS_TOKEN}"))[0] == 200
    # The token is what counts, whatever the Host (a scraper goes by address) ...
    assert (await scrape(url, Authorization=f"Bearer {METRICS_TOKEN}", Host="evil.example"))[
        0
    ] == 200
    # ... but a page on a rebound name has no token: nothing else answers there.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/operations", headers={"Host": "evil.example"}) as r:
            assert r.status == 421
        async with http.get(f"{url}/operations", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/signin"
        async with http.get(f"{url}/api/operations") as r:
            assert r.status == 401
    async with await federation.signed_in("grace") as grace:
        for path in ("/metrics", "/operations", "/api/operations", "/api/deadletters"):
            async with grace.get(url + path) as r:
                assert r.status == 403, path
                assert "operator" in await r.text()
        async with grace.get(f"{url}/") as r:
            assert 'id="operations-link"' not in await r.text()
    token = await federation.api_token("ada")
    assert (await scrape(url, Authorization=f"Bearer {token}"))[0] == 200
    async with await federation.signed_in("ada") as ada:
        async with ada.get(f"{url}/") as r:
            assert 'id="operations-link"' in await r.text()
        async with ada.get(f"{url}/metrics") as r:
            assert r.status == 200
        async with ada.get(f"{url}/operations") as r:
            assert r.status == 200 and "Dead letters" in await r.text()
        async with ada.get(f"{url}/api/operations") as r:
            view = await r.json()
    # Ada's token is hers: on the operations API too, and it never opens the page itself.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as script:
        async with script.get(f"{url}/api/operations") as r:
            assert r.status == 200
        async with script.get(f"{url}/operations") as r:
            assert r.status == 403
    assert {"now", "window", "services", "traces"} <= set(view)


async def test_the_operations_api_draws_rates_latency_and_lag_per_worker(
    federation: Federation,
) -> None:
    await start_build(federation)
    async with await federation.signed_in("ada") as ada:
        view: dict[str, Any] = {}

        async def builder_charted() -> bool:
            nonlocal view
            async with ada.get(f"{federation.url}/api/operations") as r:
                view = await r.json()
            builder = worker(view, "builder", "1")
            return builder is not None and len(builder["series"]["t"]) >= 3

        await wait_until_async(builder_charted, 20)
    builder = worker(view, "builder", "1")
    assert builder is not None
    series = builder["series"]
    assert set(series) == {"t", "rate", "p50", "p99", "lag"}
    assert all(len(series[k]) == len(series["t"]) for k in series)
    assert builder["totals"]["handled"] >= 1 and builder["connected"] and not builder["silent"]
    # The gateway's readings are on its own card.
    gateway = worker(view, "gateway", "1")
    assert gateway is not None and "sockets_open" in gateway["readings"]
    assert gateway["totals"]["outbox"] == 0
    # A step with messages has a rate and quantiles; the gateway handled the build's ticks.
    rates = [r for r in gateway["series"]["rate"] if r]
    assert rates and max(rates) > 0
    assert any(p is not None for p in gateway["series"]["p99"])


def worker(view: dict[str, Any], service: str, instance: str) -> dict[str, Any] | None:
    for s in view["services"]:
        for w in s["workers"]:
            if (w["service"], w["instance"]) == (service, instance):
                found: dict[str, Any] = w
                return found
    return None


async def wait_until_async(check: Any, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        await asyncio.sleep(0.2)


# --- one activity's trace ----------------------------------------------------------------


async def test_one_builds_trace_on_the_api_and_with_dovecote_trace(
    federation: Federation, service_env: dict[str, str]
) -> None:
    context = await start_build(federation)
    # The notifier tells Ada's followers last: the trace is complete once they are told.
    for person in ("ada", "grace", "linus"):
        await federation.probe.wait_for(
            f"users/{person}/notifications", lambda a: a.get("context") == context
        )
    async with (
        await federation.signed_in("ada") as ada,
        ada.get(f"{federation.url}/api/trace/{context}") as r,
    ):
        assert r.status == 200, await r.text()
        trace = await r.json()
    steps = trace["orderedItems"]
    assert trace["context"] == context and trace["totalItems"] == len(steps)
    names = [s["name"] for s in steps]
    # The command the gateway sent first, then what the builder did, in publishing order.
    assert names[0] == "commands/builder/start"
    assert steps[0]["service"] == "gateway" and steps[0]["actor"] == "Ada Lovelace"
    assert names.index("events/build/started") < names.index("events/build/succeeded")
    ticks = [a for a in federation.probe.on("events/build/progress") if a["context"] == context]
    assert names.count("events/build/progress") == len(ticks) == 9  # 10 % .. 90 %
    assert "state/build" in names
    told = sorted(s["name"] for s in steps if s["service"] == "notifier")
    assert told == [f"users/{p}/notifications" for p in ("ada", "grace", "linus")]
    assert {s["service"] for s in steps} == {"gateway", "builder", "notifier"}
    published = [s["published"] for s in steps]
    assert published == sorted(published)
    # The CLI: the same trace, by the start of the id as `dovecote tail` shows it.
    short = context.removeprefix("urn:uuid:")[:8]
    code, out, err = await dovecote_cli(service_env, "trace", short)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"trace {context}: {len(steps)} activities")
    assert "commands/builder/start" in lines[1] and "gateway" in lines[1]
    assert lines[1].split()[0] == "+0" and "events/build/succeeded" in out
    offsets = [float(line.split()[0].lstrip("+")) for line in lines[1:]]
    assert offsets == sorted(offsets) and offsets[-1] > 0  # the build took ticks of 0.2 s
    code, out, err = await dovecote_cli(service_env, "trace", "--json", context)
    assert code == 0 and orjson.loads(out)["totalItems"] == len(steps)
    code, out, err = await dovecote_cli(service_env, "trace", "urn:uuid:nothing-like-it")
    assert code == 1 and "holds no activity" in err
    async with (
        await federation.signed_in("ada") as ada,
        ada.get(f"{federation.url}/api/trace/urn:uuid:nothing-like-it") as r,
    ):
        assert r.status == 404 and "no activity" in (await r.json())["error"]


# --- dead letters, listed and replayed from the gateway -----------------------------------


def ledger(path: Path) -> set[str]:
    if not path.exists():
        return set()
    db = open_ledger(str(path))
    try:
        return {r[0] for r in db.execute("SELECT id FROM tally")}
    finally:
        db.close()


async def test_an_operator_lists_and_replays_a_dead_letter_through_the_gateway(
    federation: Federation, start_service: StartService, probe: Probe, tmp_path: Path
) -> None:
    poison, db = start_poisoned_tally(start_service, tmp_path, "0.001", "2")
    start_service("deadletters")
    await probe.wait_online("tally")
    await probe.wait_online("deadletters")
    bad = act.new("Create", ADA, {"type": "Note", "content": "poison"}, context="urn:uuid:c0ffee")
    probe.publish("events/tally/item", bad)
    [letter] = await probe.wait_for("deadletter/tally", timeout=30)
    url = federation.url
    async with await federation.signed_in("ada") as ada:
        report: dict[str, Any] = {}

        async def listed() -> bool:
            nonlocal report
            async with ada.get(f"{url}/api/deadletters?service=tally") as r:
                assert r.status == 200, await r.text()
                report = await r.json()
            return bool(report["totalItems"] == 1)

        await wait_until_async(listed, 20)
        [held] = report["orderedItems"]
        assert held["id"] == letter["id"] and held["service"] == "tally" and held["attempts"] == 2
        # The item, then its letter: the parked message is a step of its trace.
        async with ada.get(f"{url}/api/trace/urn:uuid:c0ffee") as r:
            steps = (await r.json())["orderedItems"]
        assert [s["name"] for s in steps] == ["events/tally/item", "deadletter/tally"]
        assert steps[1]["service"] == "tally" and steps[1]["activity"] == "Flag"
        poison.unlink()  # the fix
        # A state change from the page: Origin (this session sends it) and JSON.
        async with ada.post(f"{url}/api/deadletters/replay", json={"items": [letter["id"]]}) as r:
            assert r.status == 200, await r.text()
            replayed = await r.json()
        assert [x["id"] for x in replayed["orderedItems"]] == [letter["id"]]
        await wait_until(lambda: bad["id"] in ledger(db), 20, "the replayed item in the ledger")
        async with ada.get(f"{url}/api/deadletters") as r:
            [after] = (await r.json())["orderedItems"]
        assert after["replays"] == 1
        # Without the Origin and without the CSRF token, a cookie alone replays nothing.
        async with (
            aiohttp.ClientSession(headers={"Cookie": cookie_header(ada)}) as bare,
            bare.post(f"{url}/api/deadletters/replay", json={"all": True}) as r,
        ):
            assert r.status == 403 and "CSRF" in await r.text()
        async with ada.post(f"{url}/api/deadletters/replay", json={"every": True}) as r:
            assert r.status == 400
    async with (
        await federation.signed_in("grace") as grace,
        grace.post(f"{url}/api/deadletters/replay", json={"all": True}) as r,
    ):
        assert r.status == 403


async def test_without_the_deadletters_service_the_page_says_so(federation: Federation) -> None:
    async with (
        await federation.signed_in("ada") as ada,
        ada.get(f"{federation.url}/api/deadletters") as r,
    ):
        assert r.status == 503 and "deadletters service did not answer" in await r.text()


# --- logs --------------------------------------------------------------------------------


async def test_log_format_json_gives_one_object_per_line_with_the_context(
    start_service: StartService, probe: Probe
) -> None:
    builder = start_service("builder", LOG_FORMAT="json", BUILD_TICK_SECONDS="0.05")
    await probe.wait_online("builder")
    start = act.new("Start", ADA, {"type": "Build"})
    start["context"] = start["id"]
    probe.publish("commands/builder/start", start)
    await probe.wait_for("events/build/succeeded", lambda a: a["context"] == start["id"])
    builder.stop()
    lines = [line for line in builder.log.splitlines() if line.strip()]
    assert len(lines) > 3
    records = [orjson.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"time", "service", "instance", "level", "message", "context"} <= set(record)
        assert record["service"] == "builder" and record["instance"] == "1"
    about = [r for r in records if r["context"] == start["id"]]
    assert about, "no line carries the build's correlation id"
    assert any("started by" in r["message"] for r in about)
    assert all("[context=" not in r["message"] for r in records)


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: `make test` installs Debian's prometheus package")
    return found
