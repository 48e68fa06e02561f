"""A worker's metrics report (``metrics/<service>/<instance>``), put together from its parts:
the meter, its connection and link, its dispatcher's handlers in flight, its outbox and its
service's own readings (``dovecote.metrics`` measures and publishes)."""

from __future__ import annotations

from collections.abc import Callable

from dovecote import activity as act
from dovecote import letters, metrics, topics
from dovecote.link import Link
from dovecote.outbox import Durable
from dovecote.service import Bus, Service
from dovecote.transport import Transport


def readings(service: Service, refused_queries: int) -> dict[str, float]:
    """The service's own readings, and the presence queries it refused (not the keeper of
    dead letters: it parks them, and its letters are the record)."""
    found = dict(service.readings())
    if service.name != letters.KEEPER:
        found["queries_refused_total"] = refused_queries
    return found


def reporter(
    meter: metrics.Meter,
    interval: float,
    *,
    heartbeat: float,
    conn: Transport,
    link: Link,
    bus: Bus,
    service: Service,
    inflight: Callable[[], int],
    outbox: Durable | None,
    refused_queries: Callable[[], int],
) -> metrics.Reporter:
    sources = metrics.Sources(
        connected=lambda: link.up,
        connects=lambda: conn.connects,
        published=lambda: conn.published,
        unacknowledged=lambda: conn.unacknowledged,
        inflight=inflight,
        outbox=(lambda: len(outbox)) if outbox is not None else None,
        readings=lambda: readings(service, refused_queries()),
    )

    def publish(measurements: act.WorkerMeasurements) -> None:
        service.measured(measurements)
        report = act.MetricsReport(
            **act.envelope(), type="Update", actor=bus.actor, object=measurements
        )
        bus.publish(topics.METRICS, report, service=bus.service, instance=bus.instance)

    return metrics.Reporter(
        meter,
        sources,
        publish,
        root=bus.root,
        service=bus.service,
        instance=bus.instance,
        interval=interval,
        heartbeat=heartbeat,
    )
