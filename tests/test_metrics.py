"""Every worker measures itself and says so on the bus (``dovecote.metrics``).

A real service process (the tally) gets a known mix of traffic; its reports on
``metrics/tally/1`` must count exactly that: handled per topic, the latency histogram,
skipped copies, retries, parks, its lag behind an old activity. The unit tests below pin
the pieces: the meter, the quantiles the page draws, metrics off.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dovecote import Delivery, Service, handles, metrics
from dovecote import activity as act
from dovecote.config import Settings
from dovecote.metrics import BOUNDS, Meter, Unmetered, quantile
from dovecote.tools.broker import PrivateMosquitto
from dovecote.worker import Worker
from dovecote_testing.plugin import Probe, StartService, TestBroker, wait_until
from services.gateway import topics as gateway_topics
from tests.fixtures import start_poisoned_tally
from tests.services.tally.ledger import open_ledger

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}


def ledger(path: Path) -> set[str]:
    if not path.exists():
        return set()
    db = open_ledger(str(path))
    try:
        return {r[0] for r in db.execute("SELECT id FROM tally")}
    finally:
        db.close()


class Quiet(Service):
    """A worker for the in-process tests (the tally's module would register its test topic
    in this process's registry, which the docs tests compare with the committed docs)."""

    name = "quiet"

    @handles(gateway_topics.BUILD_START)
    async def on_start(self, activity: gateway_topics.StartBuild, delivery: Delivery) -> None:
        pass


def item(content: str = "count me", **extra: Any) -> dict[str, Any]:
    return act.new("Create", ADA, {"type": "Note", "content": content}, **extra)


async def test_a_worker_reports_what_it_handled_skipped_retried_and_parked(
    broker: TestBroker, start_service: StartService, probe: Probe, tmp_path: Path
) -> None:
    _poison, db = start_poisoned_tally(
        start_service,
        tmp_path,
        "0.05",
        "3",
        DOVECOTE_METRICS_INTERVAL="0.5",
        DOVECOTE_METRICS_HEARTBEAT="2",  # the idle report at the end comes within 2 s
    )
    await probe.wait_online("tally")
    good = [item() for _ in range(10)]
    for a in good:
        probe.publish("events/tally/item", a)
    await wait_until(lambda: len(ledger(db)) == 10, 30, "the ten items handled")
    for a in good[:3]:  # redeliveries of activities handled already: skipped
        probe.publish("events/tally/item", a)
    twice = item()  # a copy that arrives while the first is in its 50 ms handler: skipped
    probe.publish("events/tally/item", twice)
    probe.publish("events/tally/item", twice)
    probe.publish("events/tally/item", b"not an activity")  # parked before any handler
    probe.publish("events/tally/item", item("poison"))  # 3 tries: 2 retries, then parked
    old = item(published=(datetime.now(UTC) - timedelta(seconds=30)).isoformat())
    await probe.wait_for("deadletter/tally", count=2, timeout=30)
    probe.publish("events/tally/item", old)  # the newest begun: 30 s behind

    [report] = await probe.wait_for(
        "metrics/tally/1", lambda a: sum(a["object"]["handled"].values()) == 13, timeout=30
    )
    m = report["object"]
    assert report["type"] == "Update" and report["actor"]["name"] == "tally"
    assert m["name"] == "tally" and m["instance"] == "1" and m["interval"] == 0.5
    # 10, the one sent twice, the poison (its handler gave up) and the old one
    assert m["handled"] == {"events/tally/item": 13}
    assert m["skipped"] == 3 + 1
    assert m["retries"] == 2
    assert m["parked"] == 2
    assert m["connected"] is True and m["reconnects"] == 0
    latency = m["latency"]
    assert latency["bounds"] == list(BOUNDS) and sum(latency["counts"]) == 13
    # each handler slept 50 ms: none took 25 ms or less; the poison's backoff (0.2 + 0.4 s)
    # put it past 0.5 s
    assert sum(latency["counts"][: BOUNDS.index(0.025) + 1]) == 0
    assert sum(latency["counts"][BOUNDS.index(0.5) + 1 :]) == 1
    assert latency["sum"] > 12 * 0.05 + 0.6
    # The published count covers the letters, the presence Join and the reports so far.
    assert m["published"] >= 2 + 1 + 1
    # The report of the interval the old item began in says how far behind: this one, or
    # the one before when its 50 ms handler ran across the end of an interval.
    # (The fresh items' lags are under a few seconds; only the old one's is 30 s.)
    lags = [r["object"]["lag"] for r in probe.on("metrics/tally/1")]
    behind = [lag for lag in lags if lag >= 10.0]
    assert behind and all(29.0 <= lag < 60.0 for lag in behind), lags
    # Idle from then on: no lag (nothing begun since), the totals stay.
    [later] = await probe.wait_for(
        "metrics/tally/1",
        lambda a: a["id"] != report["id"] and a["published"] > report["published"],
        timeout=10,
    )
    assert later["object"]["lag"] == 0.0
    assert later["object"]["handled"] == {"events/tally/item": 13}


async def test_an_idle_worker_reports_once_then_only_what_changes(
    broker: TestBroker, root: str, probe: Probe, tmp_path: Path
) -> None:
    """An idle federation keeps the bus quiet: a report when something changed, else one a
    heartbeat (DOVECOTE_METRICS_HEARTBEAT, 600 s by default)."""
    settings = Settings.from_env(
        {
            "MQTT_URL": broker.url,
            "DOVECOTE_ROOT": root,
            "DOVECOTE_METRICS_INTERVAL": "0.2",
            "DOVECOTE_DATA_DIR": str(tmp_path),
        }
    )
    w = Worker(Quiet, settings)
    await w.start()
    try:
        await probe.wait_online("quiet")
        [first] = await probe.wait_for("metrics/quiet/1")
        assert first["object"]["quietUpTo"] == metrics.HEARTBEAT
        await asyncio.sleep(2.0)  # ten intervals, nothing handled
        assert len(probe.on("metrics/quiet/1")) == 1
        start = act.new("Start", ADA, {"type": "Build"})
        probe.publish(gateway_topics.BUILD_START.pattern, start)
        [changed] = await probe.wait_for(
            "metrics/quiet/1", lambda a: a["object"]["handled"] != {}, timeout=5
        )
        assert changed["object"]["handled"] == {gateway_topics.BUILD_START.pattern: 1}
        await asyncio.sleep(1.0)  # its lag back to 0 may be one more report; then quiet
        settled = len(probe.on("metrics/quiet/1"))
        await asyncio.sleep(2.0)
        assert len(probe.on("metrics/quiet/1")) == settled <= 3
    finally:
        await w.shutdown()


def test_a_report_is_due_when_its_totals_changed_or_the_heartbeat_passed() -> None:
    reports = [0]  # each report sent is a publish that the next one counts
    sources = metrics.Sources(
        connected=lambda: True,
        connects=lambda: 1,
        published=lambda: reports[0],
        unacknowledged=lambda: 0,
        inflight=lambda: 0,
        outbox=None,
        readings=dict,
    )
    now = [100.0]
    real = metrics.clock
    metrics.clock = lambda: now[0]
    try:
        meter = Meter()

        def sent(_: act.WorkerMeasurements) -> None:
            reports[0] += 1

        every = metrics.Reporter(
            meter, sources, sent, root="r", service="s", instance="1", interval=5
        )
        quiet = metrics.Reporter(
            meter,
            sources,
            sent,
            root="r",
            service="s",
            instance="1",
            interval=5,
            heartbeat=60,
        )

        def tick(reporter: metrics.Reporter) -> bool:
            """One interval of Reporter._run: measured, and published if due."""
            measured = reporter.measurements()
            due = reporter.due(measured)
            if due:
                sent(measured)
            return due

        assert tick(every) and tick(every)  # no heartbeat: every interval
        assert tick(quiet)  # the first always goes
        now[0] += 5
        assert not tick(quiet)  # nothing changed (its own report is no news)
        meter.done("r/x", metrics.clock())
        now[0] += 5
        assert tick(quiet)  # one handled
        now[0] += 59
        assert not tick(quiet)
        now[0] += 1
        assert tick(quiet)  # a heartbeat after 60 s of quiet
    finally:
        metrics.clock = real


async def test_metrics_off_sends_no_report_and_counts_nothing(
    broker: TestBroker, root: str, probe: Probe, tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {
            "MQTT_URL": broker.url,
            "DOVECOTE_ROOT": root,
            "DOVECOTE_METRICS_INTERVAL": "0",
            "DOVECOTE_DATA_DIR": str(tmp_path),
        }
    )
    w = Worker(Quiet, settings)
    await w.start()
    try:
        await w.conn.wait_connected(10)
        assert isinstance(w.meter, Unmetered) and w.reporter is None
        await probe.wait_online("quiet")
        await asyncio.sleep(1.5)
        assert probe.on("metrics/quiet/1") == []
    finally:
        await w.shutdown()


@pytest.mark.real_broker  # starts a private broker of its own
async def test_reconnects_and_the_connection_are_reported(tmp_path: Path, root: str) -> None:
    own = PrivateMosquitto(tmp_path / "broker").start()
    try:
        settings = Settings.from_env(
            {
                "MQTT_URL": own.url,
                "DOVECOTE_ROOT": root,
                "DOVECOTE_METRICS_INTERVAL": "60",
                "DOVECOTE_DATA_DIR": str(tmp_path),
            }
        )
        w = Worker(Quiet, settings)
        await w.start()
        assert w.reporter is not None
        # Connected means usable: the broker has granted the subscriptions (issue 22).
        await asyncio.wait_for(w.conn.ready.wait(), 10)
        first = w.reporter.measurements()
        assert first.connected is True and first.reconnects == 0
        own.stop()
        await wait_until(lambda: not w.conn.connected.is_set(), what="disconnect")
        assert w.reporter.measurements().connected is False
        own.start()
        await asyncio.wait_for(w.conn.ready.wait(), 30)
        again = w.reporter.measurements()
        assert again.connected is True and again.reconnects == 1
        await w.shutdown()
    finally:
        own.stop()


# --- the pieces ----------------------------------------------------------------------------


def test_the_meter_buckets_each_message_once_and_folds_topics_into_patterns() -> None:
    meter = Meter()
    clock = iter([10.0, 10.0003, 20.0, 20.2, 30.0, 61.0])
    real = metrics.clock
    metrics.clock = lambda: next(clock)
    try:
        for topic in ("r/users/ada/notifications", "r/users/bob/notifications", "r/x/y"):
            started = meter.begin(None)
            meter.done(topic, started)
    finally:
        metrics.clock = real
    # 0.3 ms, 200 ms, 31 s (past every bound): one in each of three buckets
    assert meter.buckets[BOUNDS.index(0.0005)] == 1
    assert meter.buckets[BOUNDS.index(0.25)] == 1
    assert meter.buckets[-1] == 1 and sum(meter.buckets) == 3
    assert meter.seconds == pytest.approx(31.2003)
    folded = meter.fold(lambda t: "users/{user}/notifications" if "/users/" in t else "x/y")
    assert folded == {"users/{user}/notifications": 2, "x/y": 1}
    assert meter.topics == {}  # the concrete topics are forgotten once folded
    meter.done("r/x/y", metrics.clock())
    assert meter.fold(lambda t: "x/y")["x/y"] == 2


def test_the_metrics_a_worker_reads_are_not_counted() -> None:
    """The gateway reads every report, its own included: counted, each would be news for
    the next report, and an idle federation would talk to itself for ever."""
    meter = Meter(unmetered="r/metrics/")
    meter.done("r/metrics/gateway/1", meter.begin(datetime.now(UTC), "r/metrics/gateway/1"))
    assert meter.newest is None and sum(meter.buckets) == 0 and meter.topics == {}
    meter.done("r/x/y", meter.begin(datetime.now(UTC), "r/x/y"))
    assert meter.newest is not None and sum(meter.buckets) == 1 and meter.topics == {"r/x/y": 1}


def test_past_a_hundred_topic_labels_the_rest_count_as_other() -> None:
    meter = Meter()
    for n in range(metrics.LABELS + 5):
        meter.done(f"r/t{n}", metrics.clock())
    folded = meter.fold(lambda t: t)
    assert len(folded) == metrics.LABELS + 1 and folded["other"] == 5


def test_lag_is_the_age_of_the_newest_activity_begun_since_the_last_report() -> None:
    meter = Meter()
    since = metrics.clock()
    assert meter.lag(since) == 0.0
    meter.begin(datetime.now(UTC) - timedelta(seconds=12))
    assert meter.lag(since) == pytest.approx(12, abs=0.5)
    assert meter.lag(metrics.clock()) == 0.0  # nothing begun since this report
    meter.begin(None)  # a retained message: no lag of its own
    assert meter.lag(since) == pytest.approx(12, abs=0.5)


def test_unmetered_counts_no_message() -> None:
    meter = Unmetered()
    meter.done("r/x", meter.begin(datetime.now(UTC)))
    assert sum(meter.buckets) == 0 and meter.topics == {} and meter.newest is None


def test_quantiles_interpolate_inside_the_bucket_like_prometheus() -> None:
    bounds = [0.1, 0.2, 0.4]
    # 100 values: 50 in (0, 0.1], 40 in (0.1, 0.2], 9 in (0.2, 0.4], 1 above
    counts = [50, 40, 9, 1]
    assert quantile(0.5, bounds, counts) == pytest.approx(0.1)
    assert quantile(0.7, bounds, counts) == pytest.approx(0.15)
    assert quantile(0.99, bounds, counts) == pytest.approx(0.4)
    assert quantile(0.995, bounds, counts) == 0.4  # past the last bound: the bound
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None
