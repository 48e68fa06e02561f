"""Worker pools: which filters a worker subscribes, and how, given what the broker can do.

N workers of one service share its load through MQTT shared subscriptions: a handler marked
``shared=True`` (the default) is subscribed as ``$share/<service>/<filter>``, so the broker
hands each message to one worker of the pool. A ``shared=False`` handler (the builder's
stop, everything the gateway forwards to its own browsers) is subscribed plainly, so every
worker gets every message.

On a broker without shared subscriptions (RabbitMQ 3.10 grants ``$share`` and delivers
nothing to it; ``dovecote.capabilities`` finds out) a plain subscription by every worker would
have each event processed N times, so instead worker ``1`` of the pool takes the pooled
filters alone and the others stand by, keeping their per-worker (plain) filters. Nothing is
lost, because worker 1's persistent session queues what arrives while it is down and the
supervisor (or systemd) brings the same instance back, and nothing is processed twice.

On RabbitMQ, given its AMQP listener (``DOVECOTE_AMQP_URL``), a pool shares its load the
broker's own way instead: the pooled filters are bound to one quorum queue of the pool and
every worker consumes from it (``dovecote.poolqueue``), whatever the pool's size, so a pool
that grows from one worker to three needs no change of form. Nothing pooled is then
subscribed over MQTT (its forms are unsubscribed, for sessions of an earlier run).

A worker told that it is alone (``DOVECOTE_POOL_SIZE=1``, which ``dovecote run`` sets for a
service of one worker) subscribes plainly even where ``$share`` works: Mosquitto 2.0.11 does
not restore shared subscriptions from its persistence file, so after a broker restart every
message published to a ``$share`` group before its workers reconnect is dropped (measured:
the plain subscription of the same session got it). A plain subscription is restored.

A persistent session remembers the subscriptions of a previous run, which may have used the
other form of a filter (plain before pools existed, or ``$share`` on another broker): the
plan also lists those forms, to be unsubscribed before subscribing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dovecote.capabilities import Capabilities
from dovecote.errors import DovecoteError

LEADER = "1"  # the instance that works alone where the broker cannot share


def is_leader(instance: str) -> bool:
    """Worker ``1``, or ``<machine>-1`` with ``DOVECOTE_INSTANCE=auto`` (dovecote.instance):
    without shared subscriptions or a pool queue, a pool must then live on one machine."""
    return instance == LEADER or instance.endswith(f"-{LEADER}")


class PoolError(DovecoteError, ValueError):
    """Handlers whose subscriptions would make a pool process a message twice."""


def overlap(a: str, b: str) -> bool:
    """True if some topic matches both MQTT filters."""
    pa, pb = a.split("/"), b.split("/")
    for x, y in zip(pa, pb, strict=False):
        if x == "#" or y == "#":
            return True
        if x != y and "+" not in (x, y):
            return False
    if len(pa) == len(pb):
        return True
    longer = pa if len(pa) > len(pb) else pb
    return longer[min(len(pa), len(pb))] == "#"  # "a/#" also matches "a"


def covers(general: str, specific: str) -> bool:
    """True if every topic matching ``specific`` also matches ``general``."""
    pg, ps = general.split("/"), specific.split("/")
    for i, g in enumerate(pg):
        if g == "#":
            return True
        if i >= len(ps) or ps[i] == "#":
            return False
        if g != "+" and (ps[i] == "+" or g != ps[i]):
            return False
    return len(pg) == len(ps)


def minimal(filters: Iterable[str]) -> list[str]:
    """Drop filters another one covers: overlapping subscriptions can deliver twice."""
    fs = set(filters)
    return sorted(f for f in fs if not any(g != f and covers(g, f) for g in fs))


def check(pooled: Iterable[tuple[str, str]], plain: Iterable[tuple[str, str]]) -> None:
    """Refuse a pooled handler whose topics a plain handler also subscribes to.

    Every worker would get such a message through the plain subscription and run the
    pooled handler too. (MQTT 3.1.1 does not say which subscription delivered a message.)
    """
    plain = list(plain)
    for f, who in pooled:
        for g, other in plain:
            if overlap(f, g):
                raise PoolError(
                    f"{who} (shared) and {other} (shared=False) both subscribe to topics "
                    f"matching {f} and {g}: every worker would run {who}; make both shared "
                    "or neither"
                )


@dataclass(frozen=True)
class Plan:
    subscribe: list[str]  # as sent, $share/ prefix included
    unsubscribe: list[str]  # other forms a resumed session may still hold
    standby: bool  # pooled filters left to the leader (no shared subscriptions)
    pooled: list[str]  # the pooled filters, without any prefix
    queued: bool = False  # the pooled filters are read from the pool's queue (AMQP)


def plan(
    service: str,
    instance: str,
    pooled: Iterable[str],
    plain: Iterable[str],
    caps: Capabilities,
    alone: bool = False,
    queue: bool = False,
) -> Plan:
    """What to subscribe and unsubscribe. ``alone``: this is the pool's only worker;
    ``queue``: the broker can give the pool a queue of its own (RabbitMQ over AMQP)."""
    pooled_, plain_ = minimal(pooled), minimal(plain)
    shared = [f"$share/{service}/{f}" for f in pooled_]
    plain_forms_of_pooled = [f for f in pooled_ if f not in plain_]
    shared_forms_of_plain = [f"$share/{service}/{f}" for f in plain_]
    if queue and not caps.shared_subscriptions and pooled_:
        return Plan(
            plain_,
            plain_forms_of_pooled + shared + shared_forms_of_plain,
            standby=False,
            pooled=pooled_,
            queued=True,
        )
    if caps.shared_subscriptions and not alone:
        return Plan(
            shared + plain_,
            plain_forms_of_pooled + shared_forms_of_plain,
            standby=False,
            pooled=pooled_,
        )
    if is_leader(instance) or alone:
        return Plan(minimal([*pooled_, *plain_]), shared + shared_forms_of_plain, False, pooled_)
    return Plan(
        plain_,
        plain_forms_of_pooled + shared + shared_forms_of_plain,
        standby=bool(pooled_),
        pooled=pooled_,
    )
