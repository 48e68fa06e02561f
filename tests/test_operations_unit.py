"""The gateway's operator side on its own: the fleet's series, the trace index's budget and
prefixes, the Prometheus output, the JSON log lines."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dovecote import activity as act
from dovecote.logs import JsonLines
from services.gateway.operations import telemetry, traces
from services.gateway.operations.prometheus import FleetCollector
from services.gateway.operations.telemetry import Fleet
from services.gateway.operations.traces import TraceIndex

STARTED = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)


def report(
    service: str = "builder",
    instance: str = "1",
    handled: int = 0,
    counts: tuple[int, ...] = (0, 0, 0),
    started: datetime = STARTED,
    **extra: Any,
) -> act.WorkerMeasurements:
    m = {
        "type": "Service",
        "id": f"urn:dovecote:service:{service}:{instance}",
        "name": service,
        "instance": instance,
        "started": started.isoformat(),
        "interval": 5.0,
        "connected": True,
        "reconnects": 0,
        "handled": {"commands/builder/start": handled},
        "latency": {"bounds": [0.01, 0.1], "counts": list(counts), "sum": 0.5},
        "skipped": 0,
        "retries": 0,
        "parked": 0,
        "published": 1,
        "unacknowledged": 0,
        "inflight": 0,
        "lag": 0.0,
        **extra,
    }
    activity = act.new("Update", act.service(service), m)
    decoded: act.MetricsReport = act.Codec(act.MetricsReport).decode(act.encode(activity))
    return decoded.object


def test_rates_and_quantiles_come_from_the_difference_of_two_reports() -> None:
    fleet = Fleet()
    fleet.record(report(handled=100, counts=(100, 0, 0)), received=1000.0)
    fleet.record(report(handled=150, counts=(100, 50, 0), lag=0.25), received=1005.0)
    [view] = fleet.view(now=1006.0)["services"][0]["workers"]
    assert view["series"]["t"] == [1005.0]
    assert view["now"]["rate"] == pytest.approx(10.0)  # 50 in 5 s
    # the 50 of this step all took 0.01-0.1 s: the median is halfway through that bucket
    assert view["now"]["p50"] == pytest.approx(0.055)
    assert view["now"]["lag"] == 0.25
    assert view["totals"]["handled"] == 150 and not view["silent"]


def test_a_restarted_worker_starts_again_from_zero_not_below() -> None:
    fleet = Fleet()
    fleet.record(report(handled=500, counts=(500, 0, 0)), received=1000.0)
    later = STARTED + timedelta(minutes=5)
    fleet.record(report(handled=20, counts=(0, 20, 0), started=later), received=1005.0)
    [view] = fleet.view(now=1006.0)["services"][0]["workers"]
    assert view["now"]["rate"] == pytest.approx(4.0)  # its 20 since it started
    assert view["now"]["p50"] is not None and view["now"]["p50"] > 0.01


def test_a_silent_worker_leaves_metrics_then_is_forgotten() -> None:
    fleet = Fleet()
    fleet.record(report(), received=1000.0)
    assert [w.service for w in fleet.current(now=1010.0)] == ["builder"]
    assert fleet.current(now=1016.0) == []  # three intervals without a report
    [view] = fleet.view(now=1016.0)["services"][0]["workers"]
    assert view["silent"] and not view["connected"]
    assert fleet.view(now=1000.0 + telemetry.HISTORY + 1)["services"] == []


def test_an_idle_worker_stays_current_and_charts_a_flat_line_until_its_heartbeat() -> None:
    fleet = Fleet()
    fleet.record(report(handled=10, counts=(10, 0, 0), quietUpTo=600.0), received=1000.0)
    fleet.record(report(handled=20, counts=(20, 0, 0), quietUpTo=600.0), received=1005.0)
    # Nothing changed since: no report for 10 minutes is idle, not silent.
    assert [w.service for w in fleet.current(now=1600.0)] == ["builder"]
    [view] = fleet.view(now=1600.0)["services"][0]["workers"]
    assert view["quiet"] and not view["silent"] and view["connected"]
    assert view["series"]["t"] == [1005.0, 1600.0]  # the line runs on to now...
    assert view["now"]["rate"] == 0.0  # ...at 0 a second
    assert fleet.current(now=1005.0 + 3 * 600.0 + 1) == []  # three heartbeats missed
    # Its presence says it left: stale at once; a new report brings it back.
    fleet.left("builder", "1")
    assert fleet.current(now=1006.0) == []
    fleet.record(report(handled=20, counts=(20, 0, 0), quietUpTo=600.0), received=1007.0)
    assert [w.service for w in fleet.current(now=1008.0)] == ["builder"]


def test_the_fleet_follows_a_bounded_number_of_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "MAX_WORKERS", 3)
    fleet = Fleet()
    for n in range(5):
        fleet.record(report(instance=str(n)), received=1000.0)
    assert len(fleet.workers) == 3 and fleet.refused == 2


def test_prometheus_output_parses_with_one_series_per_worker() -> None:
    fleet = Fleet()
    now = datetime.now(UTC).timestamp()
    fleet.record(report(handled=3, counts=(2, 1, 0), readings={"sockets_open": 4.0}), now)
    fleet.record(report(service="points", handled=1, counts=(1, 0, 0)), now)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(fleet))
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    buckets = [
        (s.labels["le"], s.value)
        for s in families["dovecote_handler_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["service"] == "builder"
    ]
    assert buckets == [("0.01", 2.0), ("0.1", 3.0), ("+Inf", 3.0)]  # cumulative
    [sockets] = families["dovecote_builder_sockets_open"].samples
    assert sockets.value == 4 and families["dovecote_builder_sockets_open"].type == "gauge"
    handled = {s.labels["service"]: s.value for s in families["dovecote_messages_handled"].samples}
    assert handled == {"builder": 3, "points": 1}


def entry(context: str, n: int, pad: int = 0) -> bytes:
    activity = act.new("Create", act.service("builder"), {"type": "Note", "content": "x" * pad})
    activity["context"] = context
    activity["published"] = f"2026-11-29T06:00:{n:02d}.000Z"
    return act.encode(activity)


def test_the_trace_index_keeps_the_newest_within_its_budget_and_says_what_it_lost() -> None:
    a, b = "urn:uuid:aaaa1111", "urn:uuid:bbbb2222"
    cost = len(entry(a, 0, pad=500)) + len("r/events/a/b") + traces.ENTRY_OVERHEAD
    index = TraceIndex(budget=5 * cost, root="r")  # room for five
    for n in range(3):
        index.add("r/events/a/b", a, entry(a, n, pad=500))
    assert index.find(a).totalItems == 3 and not index.find(a).partial
    for n in range(4):
        index.add("r/events/a/b", b, entry(b, n, pad=500))
    assert index.held == 5 * cost
    kept = index.find(a)  # its two oldest steps made room
    assert kept.totalItems == 1 and kept.partial is True
    step = act.to_json(kept.orderedItems[0])  # as the reply carries it: to the millisecond
    assert step["published"] == "2026-11-29T06:00:02.000Z"
    assert index.find(b).totalItems == 4 and not index.find(b).partial
    for n in range(5):
        index.add("r/events/a/b", b, entry(b, 10 + n, pad=500))
    assert a not in index.contexts and a not in index.partial  # gone whole: forgotten
    assert index.find(a).totalItems == 0
    index.add("r/x", None, b"{}")  # no correlation id: nothing to keep
    assert index.held == 5 * cost


def test_a_trace_is_found_by_the_start_of_its_id_unless_that_is_ambiguous() -> None:
    index = TraceIndex(budget=1 << 20, root="r")
    for context in ("urn:uuid:abcd1234-1", "urn:uuid:abcd9999-2", "urn:uuid:ffff0000-3"):
        index.add("r/events/a/b", context, entry(context, 1))
    assert index.find("ffff").context == "urn:uuid:ffff0000-3"
    many = index.find("abcd")
    assert many.totalItems == 0 and set(many.candidates) == {
        "urn:uuid:abcd1234-1",
        "urn:uuid:abcd9999-2",
    }
    assert index.find("abc").candidates == []  # too short to search by
    [step] = index.find("abcd1234").orderedItems
    assert step.name == "events/a/b" and step.service == "builder"
    assert step.activity == "Create" and step.summary.startswith("Note")
    # what the gateway answers on the bus validates against the published contract
    reply = act.TraceReply(
        **act.envelope(),
        type="Accept",
        actor=act.service("gateway"),
        object=index.find("ffff"),
        inReplyTo="urn:x:1",
    )
    act.Codec(act.TraceReply).decode(act.encode(reply))


def test_json_log_lines_carry_the_context_in_their_own_field() -> None:
    formatter = JsonLines("builder", "2")
    record = logging.LogRecord(
        "dovecote.builder", logging.INFO, __file__, 1, "%s started [context=%s]", ("B", "u:1"), None
    )
    line = orjson.loads(formatter.format(record))
    assert line["message"] == "B started" and line["context"] == "u:1"
    assert (line["service"], line["instance"], line["level"]) == ("builder", "2", "INFO")
    assert line["time"].endswith("Z")
    plain = logging.LogRecord("x", logging.WARNING, __file__, 1, "no context here", (), None)
    assert orjson.loads(formatter.format(plain))["context"] is None
    none = logging.LogRecord("x", logging.ERROR, __file__, 1, "m [context=None]", (), None)
    assert orjson.loads(formatter.format(none))["context"] is None
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in orjson.loads(formatter.format(failed))["error"]
