"""The lines a worker logs as it starts: where it reads what, on what broker, and why."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dovecote import pool, poolqueue

if TYPE_CHECKING:
    from dovecote.worker import Worker


def log_start(worker: Worker, plan: pool.Plan, alone: bool) -> None:
    """What a starting worker subscribes to, and what its broker makes it do instead of
    what it would do elsewhere (a queue, standing by, asking for the state)."""
    assert worker.caps is not None
    broker = worker.settings.broker.redacted()
    worker.log.info(
        "%s worker %s starting; broker %s (%s); subscribed to %s",
        worker.name,
        worker.settings.instance,
        broker,
        worker.caps.describe(),
        ", ".join(plan.subscribe),
    )
    if plan.queued:
        worker.log.info(
            "broker %s does not deliver shared subscriptions ($share): the pool reads "
            "%s from its queue %s over AMQP (competing consumers)",
            broker,
            ", ".join(plan.pooled),
            poolqueue.queue_name(worker.root, worker.name),
        )
    # The inbox alone (no shared handler, e.g. the gateway) is nothing to warn about.
    elif not worker.caps.shared_subscriptions and not alone and worker.shares_work:
        if plan.standby:
            worker.log.warning(
                "broker %s does not deliver shared subscriptions ($share): this worker "
                "(%s) stands by and handles only %s; worker %s of %s handles %s alone. "
                "Nothing is lost or handled twice; to spread the load, use a broker with "
                "shared subscriptions (see docs/brokers.md)",
                broker,
                worker.settings.instance,
                ", ".join(worker.plain),
                pool.LEADER,
                worker.name,
                ", ".join(plan.pooled),
            )
        else:  # a pool of one is fine: worth knowing, not a warning
            worker.log.info(
                "broker %s does not deliver shared subscriptions ($share): this worker "
                "handles %s alone; other workers of %s stand by (see docs/brokers.md)",
                broker,
                ", ".join(plan.pooled),
                worker.name,
            )
    if worker.state.wanted:
        worker.log.info(
            "broker %s does not deliver retained messages to wildcards (and may keep "
            "them per node): asking every worker to announce itself and the owners "
            "of state to republish it, on %s",
            broker,
            worker.state.topic,
        )
