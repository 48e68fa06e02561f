"""The federation's health as the gateway hears it: every worker's metrics reports.

Each worker publishes its totals on ``metrics/<service>/<instance>`` every few seconds
(``dovecote.metrics``); every gateway worker keeps the latest report of each and, for the
operations page's charts, a point per report for the last ``HISTORY`` seconds. Rates,
latency quantiles and lag over time come from the differences between two points, so a
lost report only makes one step of a chart wider, and a worker that restarted (its
``started`` moved) begins again from zero instead of showing a negative rate.

An idle worker reports only when its totals change, and at least every ``quietUpTo``
seconds (``DOVECOTE_METRICS_HEARTBEAT``): between two reports its charts run on flat to now
(nothing handled is a rate of 0). A worker whose reports stop is *stale* after
``STALE_INTERVALS`` of its longest silence, or at once when its presence says it left: it
leaves ``/metrics`` (Prometheus then marks its series stale) and shows as silent on the page,
and it is forgotten after ``HISTORY`` (or that longest silence). Bounded: at most
``MAX_WORKERS`` workers are followed.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from dovecote import activity as act
from dovecote.metrics import quantile

log = logging.getLogger("dovecote.gateway.telemetry")

HISTORY = 15 * 60  # seconds of points a chart shows
STALE_INTERVALS = 3  # reports missed before a worker counts as silent
MAX_WORKERS = 1000


@dataclass(frozen=True, slots=True)
class Point:
    at: float  # when the gateway received the report (time.time())
    started: datetime  # the worker's start: another one means it restarted
    handled: int
    counts: tuple[int, ...]
    lag: float


@dataclass
class Followed:
    """One worker: its latest report and the points of the last ``HISTORY`` seconds."""

    service: str
    instance: str
    latest: act.WorkerMeasurements
    received: float
    points: deque[Point] = field(default_factory=deque)
    gone: bool = False  # its presence said Leave after its latest report

    @property
    def longest_silence(self) -> float:
        """How long the worker may stay quiet and still be up (an idle one's heartbeat)."""
        return self.latest.quietUpTo or self.latest.interval

    def stale(self, now: float) -> bool:
        return self.gone or now - self.received > STALE_INTERVALS * self.longest_silence

    def quiet(self, now: float) -> bool:
        """Up, and idle since its latest report: nothing changed, so nothing was sent."""
        return not self.stale(now) and now - self.received > 1.5 * self.latest.interval


def handled_total(m: act.WorkerMeasurements) -> int:
    return sum(m.handled.values())


def step(a: Point, b: Point, bounds: list[float]) -> dict[str, float | None]:
    """What happened between two reports: messages a second, latency quantiles, lag."""
    seconds = max(b.at - a.at, 1e-3)
    restarted = b.started != a.started or len(a.counts) != len(b.counts)
    handled = b.handled if restarted else b.handled - a.handled
    counts = (
        list(b.counts) if restarted else [y - x for x, y in zip(a.counts, b.counts, strict=True)]
    )
    if handled < 0 or min(counts, default=0) < 0:  # a report out of order: start over
        handled, counts = b.handled, list(b.counts)
    return {
        "rate": handled / seconds,
        "p50": quantile(0.5, bounds, counts),
        "p99": quantile(0.99, bounds, counts),
        "lag": b.lag,
    }


class Fleet:
    """Every worker's latest report, and a short history of each."""

    def __init__(self) -> None:
        self.workers: dict[tuple[str, str], Followed] = {}
        self.refused = 0  # reports of new workers past MAX_WORKERS

    def record(self, m: act.WorkerMeasurements, received: float | None = None) -> None:
        now = time.time() if received is None else received
        key = (m.name, m.instance)
        followed = self.workers.get(key)
        if followed is None:
            self.forget(now)
            if len(self.workers) >= MAX_WORKERS:
                self.refused += 1
                return
            followed = self.workers[key] = Followed(m.name, m.instance, m, now)
        followed.latest, followed.received, followed.gone = m, now, False
        points = followed.points
        points.append(Point(now, m.started, handled_total(m), tuple(m.latency.counts), m.lag))
        while points and now - points[0].at > HISTORY:
            points.popleft()

    def left(self, service: str, instance: str) -> None:
        """The worker's presence said Leave: stale now (a new report revives it)."""
        followed = self.workers.get((service, instance))
        if followed is not None:
            followed.gone = True

    def forget(self, now: float) -> None:
        """Drop the workers silent for longer than a chart shows and than an idle one is."""
        for key in [
            k
            for k, w in self.workers.items()
            if now - w.received > max(HISTORY, STALE_INTERVALS * w.longest_silence)
        ]:
            del self.workers[key]

    def current(self, now: float | None = None) -> list[Followed]:
        """The workers that report (not stale), by service and instance."""
        now = time.time() if now is None else now
        return [w for _, w in sorted(self.workers.items()) if not w.stale(now)]

    def view(self, now: float | None = None) -> dict[str, Any]:
        """What the operations page draws: per service, per worker, totals and series."""
        now = time.time() if now is None else now
        self.forget(now)
        services: dict[str, list[dict[str, Any]]] = {}
        for (service, _), w in sorted(self.workers.items()):
            services.setdefault(service, []).append(worker_view(w, now))
        return {
            "now": now,
            "window": HISTORY,
            "services": [{"name": name, "workers": ws} for name, ws in services.items()],
        }


def worker_view(w: Followed, now: float) -> dict[str, Any]:
    m = w.latest
    bounds = list(m.latency.bounds)
    points = list(w.points)
    if w.quiet(now) and points:  # idle since its latest report: the same totals until now
        points.append(replace(points[-1], at=now, lag=0.0))
    steps = [step(a, b, bounds) for a, b in itertools.pairwise(points)]
    series: dict[str, list[Any]] = {"t": [p.at for p in points[1:]]}
    for name in ("rate", "p50", "p99", "lag"):
        series[name] = [s[name] for s in steps]
    latest = steps[-1] if steps else {"rate": None, "p50": None, "p99": None, "lag": m.lag}
    return {
        "service": w.service,
        "instance": w.instance,
        "silent": w.stale(now),
        "quiet": w.quiet(now),
        "age": round(now - w.received, 3),
        "interval": m.interval,
        "started": m.started.isoformat(timespec="milliseconds"),
        "connected": m.connected and not w.stale(now),
        "totals": {
            "handled": handled_total(m),
            "skipped": m.skipped,
            "retries": m.retries,
            "parked": m.parked,
            "published": m.published,
            "reconnects": m.reconnects,
            "unacknowledged": m.unacknowledged,
            "inflight": m.inflight,
            "outbox": m.outbox,
        },
        "handled": dict(sorted(m.handled.items())),
        "readings": dict(sorted(m.readings.items())),
        "now": latest,
        "series": series,
    }
