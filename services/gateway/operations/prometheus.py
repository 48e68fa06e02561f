"""``GET /metrics``: every worker of the federation in Prometheus' text format.

The services stay MQTT-only: each worker publishes its measurements on the bus
(``dovecote.metrics``), every gateway worker hears them all (``telemetry.py``), and any of
them answers a scrape with one series per worker (labels ``service`` and ``instance``),
written by prometheus-client. A worker that stopped reporting leaves the output. The
gateway's own series come from its own reports, kept as they are made, and whether it can
reach the bus is read at the scrape (``dovecote_bus_reachable``): cut off, it hears no
one's reports, and that is what a scrape must show (issue 22).

Who may read it: a scraper sending ``Authorization: Bearer <METRICS_TOKEN>``, or an
operator (``OPERATORS``: their session, or their personal token). It answers whatever the
``Host`` (a scraper addresses a target by IP and port, not by ``PUBLIC_URL``): a page on a
rebound name gets no cookie of this gateway's and has no token, so it reads nothing.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dovecote.link import Link
from services.gateway.context import CTX
from services.gateway.operations.telemetry import Fleet, Followed
from services.gateway.web import sessions

WORKER = ["service", "instance"]
REGISTRY = web.AppKey("prometheus", CollectorRegistry)

# (field of the report, metric name, help): counts since the worker started
COUNTERS = (
    ("skipped", "dovecote_redeliveries_skipped", "Copies of an activity already handled "
     "(or in its handler), acknowledged and skipped."),
    ("retries", "dovecote_handler_retries", "Handler runs after a failed first one."),
    ("parked", "dovecote_messages_parked", "Messages dead-lettered."),
    ("published", "dovecote_messages_published", "Messages the worker published."),
    ("reconnects", "dovecote_reconnects", "Times the worker connected again to the broker."),
)  # fmt: skip
GAUGES = (
    ("unacknowledged", "dovecote_unacknowledged_publishes", "QoS 1 publishes the broker "
     "has not acknowledged yet."),
    ("inflight", "dovecote_handlers_in_flight", "Handlers running now."),
    ("lag", "dovecote_lag_seconds", "Age of the newest activity the worker began handling "
     "(now minus its published), at its last report; 0: it began none."),
)  # fmt: skip


class FleetCollector(Collector):
    """Reads the latest reports at each scrape; holds no metric objects of its own."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        workers = self.fleet.current(now)
        yield self._handled(workers)
        yield self._latency(workers)
        for field, name, text in COUNTERS:
            counter = CounterMetricFamily(name, text, labels=WORKER)
            for w in workers:
                counter.add_metric([w.service, w.instance], getattr(w.latest, field))
            yield counter
        for field, name, text in GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=WORKER)
            for w in workers:
                gauge.add_metric([w.service, w.instance], getattr(w.latest, field))
            yield gauge
        yield from self._state(workers, now)
        yield from self._readings(workers)

    def _handled(self, workers: list[Followed]) -> Metric:
        handled = CounterMetricFamily(
            "dovecote_messages_handled",
            "Messages whose handler ran to its end (or gave up), by topic pattern.",
            labels=[*WORKER, "topic"],
        )
        for w in workers:
            for topic, count in sorted(w.latest.handled.items()):
                handled.add_metric([w.service, w.instance, topic], count)
        return handled

    def _latency(self, workers: list[Followed]) -> Metric:
        latency = HistogramMetricFamily(
            "dovecote_handler_seconds",
            "Time from a message's handler beginning to its acknowledgement (retries included).",
            labels=WORKER,
        )
        for w in workers:
            h = w.latest.latency
            running, buckets = 0, []
            for bound, count in zip([*h.bounds, float("inf")], h.counts, strict=False):
                running += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
            latency.add_metric([w.service, w.instance], buckets, h.sum)
        return latency

    def _state(self, workers: list[Followed], now: float) -> Iterable[Metric]:
        connected = GaugeMetricFamily(
            "dovecote_connected", "1 while the worker is connected to the broker.", labels=WORKER
        )
        started = GaugeMetricFamily(
            "dovecote_worker_start_time_seconds",
            "When the worker started (Unix time).",
            labels=WORKER,
        )
        age = GaugeMetricFamily(
            "dovecote_report_age_seconds",
            "Seconds since the gateway received the worker's last report.",
            labels=WORKER,
        )
        outbox = GaugeMetricFamily(
            "dovecote_outbox_messages",
            "Messages in the worker's durable outbox the broker has not acknowledged.",
            labels=WORKER,
        )
        for w in workers:
            labels = [w.service, w.instance]
            connected.add_metric(labels, 1.0 if w.latest.connected else 0.0)
            started.add_metric(labels, w.latest.started.timestamp())
            age.add_metric(labels, round(now - w.received, 3))
            if w.latest.outbox is not None:
                outbox.add_metric(labels, w.latest.outbox)
        return [connected, started, age, outbox]

    def _readings(self, workers: list[Followed]) -> Iterable[Metric]:
        """A service's own readings: ``dovecote_<service>_<name>``, a counter when the
        name ends in ``_total``."""
        found: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for w in workers:
            for name, value in sorted(w.latest.readings.items()):
                full = f"dovecote_{w.service.replace('-', '_')}_{name}"
                metric = found.get(full)
                if metric is None:
                    text = f"The {w.service} service's own reading {name}."
                    metric = found[full] = (
                        CounterMetricFamily(full, text, labels=WORKER)
                        if name.endswith("_total")
                        else GaugeMetricFamily(full, text, labels=WORKER)
                    )
                metric.add_metric([w.service, w.instance], value)
        return found.values()


class LinkCollector(Collector):
    """This gateway worker's own link to the bus, as it is at the scrape."""

    def __init__(self, link: Link, service: str, instance: str) -> None:
        self.link = link
        self.labels = [service, instance]

    def collect(self) -> Iterator[Metric]:
        up = self.link.up
        reachable = GaugeMetricFamily(
            "dovecote_bus_reachable",
            "1 while this gateway worker is connected to the broker with its subscriptions "
            "granted; 0 while it cannot reach the bus (it then hears no worker's reports).",
            labels=WORKER,
        )
        reachable.add_metric(self.labels, 1.0 if up else 0.0)
        down = GaugeMetricFamily(
            "dovecote_bus_unreachable_seconds",
            "Seconds since this gateway worker lost the bus; 0 while it reaches it.",
            labels=WORKER,
        )
        since = self.link.since.timestamp()
        down.add_metric(self.labels, 0.0 if up else round(max(0.0, time.time() - since), 3))
        waiting = GaugeMetricFamily(
            "dovecote_outbox_waiting",
            "Events this gateway worker accepted (201, 202) that the broker has not "
            "acknowledged yet, now.",
            labels=WORKER,
        )
        waiting.add_metric(self.labels, float(self.link.waiting))
        yield from (reachable, down, waiting)


def add_routes(app: web.Application) -> None:
    ctx = app[CTX]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(ctx.operations.fleet))
    registry.register(LinkCollector(ctx.link, "gateway", ctx.instance))
    app[REGISTRY] = registry
    app.router.add_get("/metrics", metrics)


async def metrics(request: web.Request) -> web.Response:
    await need_reader(request)
    body = generate_latest(request.app[REGISTRY])
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response


async def need_reader(request: web.Request) -> None:
    """A scraper with ``METRICS_TOKEN``, or an operator; 401/403 with the reason."""
    ops = request.app[CTX].operations
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.strip().partition(" ")
    token = ops.metrics_token
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token):
        return
    who = await sessions.person(request)  # another token: a person's, or a 401
    if who is None:
        raise sessions.unauthorised(
            "send Authorization: Bearer <METRICS_TOKEN> (a scraper), or sign in as an operator"
        )
    if not ops.is_operator(who):
        raise web.HTTPForbidden(text="metrics are for operators and scrapers (METRICS_TOKEN)")
