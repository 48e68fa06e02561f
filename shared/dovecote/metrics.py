"""A worker measures itself: what the message path counts, and the report it publishes.

The ``Meter`` is bumped by the message path (``dispatch.py``) and read only here, both on
the event loop: plain integers, no locks. Per message it costs two clock reads, one bucket
found by bisection in a fixed array, and one dict increment (``begin`` and ``done``); what
is rare (a skipped copy, a retry, a park) is one attribute increment where it happens.
Measured: about 0.5 µs, +3 % of what a message cost a worker, +7-8 % since the reading of
packets halved the rest (issue 27; docs/performance.md).

Every ``DOVECOTE_METRICS_INTERVAL`` seconds the ``Reporter`` measures the worker's totals
since it started, for ``metrics/<service>/<instance>`` (QoS 0, about 1 KB): counters only
ever grow, so a lost report loses nothing and the next one repairs it, and whoever reads
them (the gateway's ``/metrics`` and operations page) takes rates from their differences.
``0`` turns metrics off: the path calls an ``Unmetered`` that does nothing, and no report
is sent. A report whose totals did not change since the last one sent waits, up to
``DOVECOTE_METRICS_HEARTBEAT`` seconds (600; 0: every interval, as before): an idle worker
stays quiet on the bus, and its report says so (``quietUpTo``), so a reader does not take
quiet for silence.

**Lag** is how old the activity a worker begins handling is, against its ``published``
time: sampled at each report from the newest activity begun since the previous one (0
when it began none: nothing is waiting for it that it has seen). Retained messages are left
out (state from before the worker started is old on purpose). It compares this machine's
clock with the publisher's: keep clocks in sync (NTP), or read it as "plus the skew".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import msgspec

from dovecote import activity as act
from dovecote import topics

log = logging.getLogger("dovecote.metrics")

# Upper bounds of the latency buckets, seconds: an eager handler takes microseconds, a
# thumbnail tens of milliseconds, a retried handler (with its backoff) seconds.
BOUNDS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
LABELS = 100  # distinct topic labels a worker reports; past that, "other"
INTERVAL = 5.0  # seconds between reports (DOVECOTE_METRICS_INTERVAL)
# An idle worker's longest silence (DOVECOTE_METRICS_HEARTBEAT): with seven workers, a report
# every 5 s made 56 of 64 lines that `mosquitto_sub -t 'dovecote/#'` showed in 40 s of an
# idle federation; unchanged reports every 10 min make well under one.
HEARTBEAT = 600.0
clock = time.perf_counter


class Meter:
    """What one worker has done since it started."""

    def __init__(self, unmetered: str = "") -> None:
        # Topics under this prefix are not counted: the metrics reports a worker reads (the
        # gateway's). Counting them made each report news for the next, and an idle
        # federation talked to itself for ever.
        self.unmetered = unmetered
        self.started = act.instant()
        self.buckets = [0] * (len(BOUNDS) + 1)  # the last: slower than every bound
        self.seconds = 0.0  # handler time, all messages together
        self.topics: dict[str, int] = {}  # concrete topic -> handled, since the last fold
        self.handled: dict[str, int] = {}  # topic label -> handled, since start
        self.skipped = 0  # copies of an activity handled already (or in its handler)
        self.retries = 0  # handler runs after the first
        self.parked = 0  # messages dead-lettered
        self.newest: datetime | None = None  # ``published`` of the newest activity begun
        self.newest_at = 0.0  # and when it began (``clock``)

    def begin(self, published: datetime | None, topic: str = "") -> float:
        """A message's handling begins; its ``published`` (None: retained, no lag)."""
        now = clock()
        if self.unmetered and topic.startswith(self.unmetered):
            return -1.0  # not counted: see ``unmetered``
        if published is not None:
            self.newest = published
            self.newest_at = now
        return now

    def done(self, topic: str, started: float) -> None:
        """A message's handling is over (handled, or given up and parked)."""
        if started < 0:
            return
        took = clock() - started
        self.buckets[bisect_left(BOUNDS, took)] += 1
        self.seconds += took
        counts = self.topics
        counts[topic] = counts.get(topic, 0) + 1

    def fold(self, label: Callable[[str], str]) -> dict[str, int]:
        """The per-topic counts so far, by label (a topic's registry pattern): the
        concrete topics counted since the last fold are added up and forgotten, so one
        topic per request (a reply's) costs memory for one report's time only."""
        handled = self.handled
        for topic, count in self.topics.items():
            name = label(topic)
            if name not in handled and len(handled) >= LABELS:
                name = "other"
            handled[name] = handled.get(name, 0) + count
        self.topics.clear()
        return dict(handled)

    def lag(self, since: float) -> float:
        """Seconds between the ``published`` of the newest activity begun after ``since``
        (a ``clock`` reading) and the moment it began; 0 when none began."""
        if self.newest is None or self.newest_at < since:
            return 0.0
        began = time.time() - (clock() - self.newest_at)
        return max(0.0, began - self.newest.timestamp())


class Unmetered(Meter):
    """Metrics off (``DOVECOTE_METRICS_INTERVAL=0``): the message path counts nothing."""

    def begin(self, published: datetime | None, topic: str = "") -> float:
        return 0.0

    def done(self, topic: str, started: float) -> None:
        pass


def quantile(q: float, bounds: tuple[float, ...] | list[float], counts: list[int]) -> float | None:
    """The ``q`` quantile (0-1) of a bucketed distribution, interpolated inside its bucket
    as Prometheus' ``histogram_quantile`` does; None for no observations. Values past the
    last bound are reported as that bound."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(bounds):
                return float(bounds[-1])
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (rank - seen) / count
        seen += count
    return float(bounds[-1])


# --- the report --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Sources:
    """Where a report's readings come from, besides the meter (the worker's parts)."""

    connected: Callable[[], bool]
    connects: Callable[[], int]
    published: Callable[[], int]
    unacknowledged: Callable[[], int]
    inflight: Callable[[], int]
    outbox: Callable[[], int] | None
    readings: Callable[[], Mapping[str, float]]


class Reporter:
    """Publishes one worker's measurements every ``interval`` seconds."""

    def __init__(
        self,
        meter: Meter,
        sources: Sources,
        publish: Callable[[act.WorkerMeasurements], None],
        *,
        root: str,
        service: str,
        instance: str,
        interval: float,
        heartbeat: float = 0.0,
    ) -> None:
        self.meter = meter
        self.sources = sources
        self._publish = publish
        self.root = root
        self.service = service
        self.instance = instance
        self.interval = interval
        # Nothing changed since the last report: the next waits up to this long (0: never).
        self.heartbeat = max(heartbeat, interval) if heartbeat else 0.0
        self._last: bytes | None = None
        self._sent = 0.0
        self._reports = 0  # reports sent: each one is a publish the next report counts
        self._labels: dict[str, str] = {}
        self._since = clock()
        self._task: asyncio.Task[None] | None = None

    def label(self, topic: str) -> str:
        """A concrete topic's registry pattern (``users/{user}/notifications``), or the
        topic below the root when no entry is registered here."""
        name = self._labels.get(topic)
        if name is None:
            found = topics.lookup(self.root, topic)
            name = found[0].pattern if found else topic.removeprefix(f"{self.root}/")
            if len(self._labels) > 10_000:
                self._labels.clear()
            self._labels[topic] = name
        return name

    def measurements(self) -> act.WorkerMeasurements:
        """The report's ``object``: everything since the worker started."""
        meter, src = self.meter, self.sources
        now = clock()
        obj = act.WorkerMeasurements(
            type="Service",
            id=f"urn:dovecote:service:{self.service}:{self.instance}",
            name=self.service,
            instance=self.instance,
            started=meter.started,
            interval=self.interval,
            connected=src.connected(),
            reconnects=max(0, src.connects() - 1),
            handled=meter.fold(self.label),
            latency=act.Latency(
                bounds=list(BOUNDS), counts=list(meter.buckets), sum=round(meter.seconds, 6)
            ),
            skipped=meter.skipped,
            retries=meter.retries,
            parked=meter.parked,
            published=src.published(),
            unacknowledged=src.unacknowledged(),
            inflight=src.inflight(),
            lag=round(meter.lag(self._since), 6),
            outbox=src.outbox() if src.outbox is not None else None,
            readings={k: float(v) for k, v in src.readings().items()},
            quietUpTo=self.heartbeat or None,
        )
        self._since = now
        return obj

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def due(self, measured: act.WorkerMeasurements) -> bool:
        """Whether this report goes out: something changed since the last one sent, or it
        has been quiet for ``heartbeat`` seconds. An idle worker's totals stay the same,
        and a bus full of identical reports drowns what happens on it."""
        if not self.heartbeat:
            return True
        # Lag included: back to 0 once idle is news; an idle worker's lag stays exactly 0.
        # Its publish count less its reports: a report is not news of itself.
        own = msgspec.structs.replace(measured, published=measured.published - self._reports)
        totals = act.encode(own)
        now = clock()
        if totals == self._last and now - self._sent < self.heartbeat:
            return False
        self._last, self._sent = totals, now
        self._reports += 1
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                measured = self.measurements()
                if self.due(measured):
                    self._publish(measured)
            except Exception:  # a report is never worth a worker: say it and go on
                log.exception("could not publish this worker's metrics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def meter_for(root: str, interval: float) -> Meter | Unmetered:
    """A worker's meter: none when metrics are off; the metrics it reads are not counted."""
    return Meter(unmetered=f"{root}/{topics.METRICS.kind}/") if interval else Unmetered()
