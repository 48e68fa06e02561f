"""A worker's measurements as a payload (``metrics/{service}/{instance}``; measured by
``dovecote.metrics``)."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from dovecote.as2 import Activity, Iri, Model, Name, Published, doc

Count = Annotated[int, Meta(ge=0)]
Label = Annotated[str, Meta(max_length=200)]
ReadingName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class Latency(Model):
    """Handler latency as a histogram: how many messages took how long."""

    bounds: Annotated[
        Annotated[list[float], Meta(min_length=1, max_length=64)],
        doc("Upper bounds of the buckets in seconds, ascending."),
    ]
    counts: Annotated[
        Annotated[list[Count], Meta(min_length=2, max_length=65)],
        doc(
            "Messages per bucket since the worker started, one more than `bounds`: "
            "`counts[i]` took at most `bounds[i]` (and more than `bounds[i-1]`); the last "
            "took longer than every bound. Not cumulative."
        ),
    ]
    sum: Annotated[
        Annotated[float, Meta(ge=0)],
        doc("Seconds, every message together."),
    ]


class WorkerMeasurements(Model):
    """One worker's totals since it started; rates come from two reports' difference."""

    type: Literal["Service"]
    id: Annotated[
        Iri,
        doc("`urn:dovecote:service:<service>:<instance>`."),
    ]
    name: Annotated[
        Name,
        doc("The service."),
    ]
    instance: Annotated[
        Name,
        doc("The worker within its service (`DOVECOTE_INSTANCE`)."),
    ]
    started: Annotated[
        Published,
        doc("When the worker started: every count below is since then."),
    ]
    interval: Annotated[
        Annotated[float, Meta(gt=0)],
        doc("Seconds between two reports (`DOVECOTE_METRICS_INTERVAL`)."),
    ]
    connected: Annotated[
        bool,
        doc(
            "Whether the worker's connection to the broker was up when it made the report "
            "(a worker that is down sends none: its reports stop)."
        ),
    ]
    reconnects: Annotated[
        Count,
        doc("Times the worker connected again after losing the broker."),
    ]
    handled: Annotated[
        Annotated[dict[Label, Count], Meta(max_length=128)],
        doc(
            "Messages whose handler ran to its end (or gave up), by topic: the registry's "
            "pattern (`users/{user}/notifications`), else the topic below the root; past "
            "100 topics, `other`."
        ),
    ]
    latency: Annotated[
        Latency,
        doc(
            "How long handling took, from the moment the message's handler began to its "
            "acknowledgement: retries and their backoff included."
        ),
    ]
    skipped: Annotated[
        Count,
        doc(
            "Redeliveries skipped: copies of an activity already handled, or still in its "
            "handler (acknowledged with it)."
        ),
    ]
    retries: Annotated[
        Count,
        doc("Handler runs after a failed first one."),
    ]
    parked: Annotated[
        Count,
        doc("Messages dead-lettered (on `deadletter/<service>`)."),
    ]
    published: Annotated[
        Count,
        doc("Messages the worker published (its reports, presence and letters included)."),
    ]
    unacknowledged: Annotated[
        Count,
        doc("QoS 1 publishes the broker has not acknowledged yet."),
    ]
    inflight: Annotated[
        Count,
        doc("Handlers running now (waiting on I/O, or on a retry's backoff)."),
    ]
    lag: Annotated[
        Annotated[float, Meta(ge=0)],
        doc(
            "Seconds: how old the newest activity the worker began handling since the last "
            "report was when it began (now minus its `published`); 0 when it began none. "
            "Includes the clock difference between the publisher and this worker."
        ),
    ]
    outbox: Annotated[
        Count | None,
        doc(
            "Messages in the worker's durable outbox that the broker has not acknowledged "
            "(services with one: the gateway)."
        ),
    ] = None
    readings: Annotated[
        Annotated[dict[ReadingName, float], Meta(max_length=32)],
        doc(
            "The service's own readings (the gateway's open sockets, bytes queued, 1013 "
            "closes, replays): a name ending in `_total` counts since the start, any other "
            "is a value now."
        ),
    ] = {}
    quietUpTo: Annotated[
        Annotated[float, Meta(gt=0)] | None,
        doc(
            "A worker reports every `interval` while something changes, and when nothing "
            "does, only every `quietUpTo` seconds (`DOVECOTE_METRICS_HEARTBEAT`): an idle "
            "federation keeps the bus quiet. Absent: a report every `interval`."
        ),
    ] = None


class MetricsReport(Activity):
    """A worker's measurements, every few seconds while it works (``dovecote.metrics``)."""

    type: Literal["Update"]
    object: Annotated[
        WorkerMeasurements,
        doc("The worker and its measurements."),
    ]
