"""One service instance on one MQTT connection: start, presence, stop.

``run(ServiceClass)`` is the whole ``__main__`` of a service. The ``Worker`` it makes:

- checks what the broker really delivers (``dovecote.capabilities``) and plans the pool's
  subscriptions (``dovecote.pool``);
- opens the service's resources (``Service.setup``), subscribes, connects, and once the
  broker has granted its subscriptions announces itself on ``services/<service>/<instance>``
  (retained Join; its Last Will is a Leave: ``dovecote.presence``) and says so on
  ``bus.link`` (``dovecote.link``);
- keeps a persistent session: on a RabbitMQ cluster it is a quorum queue, which outlives
  the node it was made on. A service that wants no backlog from before it started (the
  gateway: ``Service.fresh_session``) has its session cleared at start and at a clean stop
  instead of a clean session, whose queue RabbitMQ 3.10 keeps on one node: with that node
  down, the client id could subscribe nowhere (issue 22);
- hands every message to its ``Dispatcher`` (``dovecote.dispatch``), where a message's whole
  path is;
- answers the state query (``services/query``) and asks it when it needs to
  (``dovecote.statequery``);
- tells the service once the retained messages of its subscriptions have arrived
  (``dovecote.arrival``: a marker it published after subscribing came back);
- keeps an outbox for durable publishes (``dovecote.outbox``) when the service asks;
- reads its pooled messages from the pool's AMQP queue where the broker has no shared
  subscriptions (``dovecote.poolfeed``);
- measures itself and reports on ``metrics/<service>/<instance>`` (``dovecote.reporting``);
- stops on SIGTERM/SIGINT, or when the ``dovecote run`` that started it is gone
  (``dovecote.lifeline``): teardown, handlers in flight finish (bounded), a Leave, a clean
  disconnect; and the same, then exit code 1, should its connection ever stop reconnecting
  (a bug in it): a restart brings it back, and no live process sits cut off holding its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys

from dovecote import capabilities, instance, letters, lifeline, metrics, pool, redelivery, topics
from dovecote.arrival import RetainedArrival
from dovecote.capabilities import Capabilities
from dovecote.config import ConfigError, Settings
from dovecote.dispatch import Binding, Dispatcher
from dovecote.errors import BusError
from dovecote.link import Link
from dovecote.logs import repeats_from, setup_logging
from dovecote.mqtt import Connection, Message
from dovecote.outbox import Durable
from dovecote.poolfeed import PoolFeed
from dovecote.presence import Presence
from dovecote.reporting import reporter
from dovecote.service import Bus, Service, inbox
from dovecote.startlog import log_start
from dovecote.statequery import StateQuery, needs_asking
from dovecote.transport import Connect, Transport

FORGET_TIMEOUT = 2.0  # seconds a stopping worker tries to clear its fresh session


class Worker:
    """Runs one service instance on one MQTT connection, composed of its parts."""

    def __init__(
        self, service_cls: type[Service], settings: Settings, connect: Connect = Connection
    ) -> None:
        """``connect``: how to reach the bus; a test's in-memory one (``dovecote_testing``)."""
        self.settings = settings
        self._connect = connect
        self.name = service_cls.name
        self.root = settings.root
        self.log = logging.getLogger(f"dovecote.{self.name}")
        self.client_id = f"{settings.root}-{self.name}-{settings.instance}"
        self.presence = Presence(self.root, self.name, settings.instance)
        self.inbox = inbox(self.root, self.name)
        self.fresh = service_cls.fresh_session
        self.conn: Transport = connect(
            settings.broker,
            self.client_id,
            on_message=self._on_message,
            clean_session=False,  # a fresh session is cleared by ``forget_session`` instead
            keepalive=settings.keepalive,
            will=self.presence.will(),
            on_connected=self._on_connected,
            on_subscribed=self._on_subscribed,
            on_lost=self._on_lost,
        )
        self.link = Link(self._waiting)
        self.outbox = (
            Durable(settings, self.client_id, self.conn, self.link) if service_cls.outbox else None
        )
        self.bus = Bus(
            self.conn.publish,
            self.name,
            settings,
            self.outbox.publish if self.outbox is not None else None,
            operator=service_cls.operator,
            link=self.link,
        )
        self.service = service_cls(self.bus, settings)
        # Signs the letters this worker parks; checks those sent back (dovecote.redelivery).
        self.seal = redelivery.Seal.for_service(settings, self.name)
        self.feed = PoolFeed(settings, self.name, self.conn)
        bindings = [
            Binding(f"{self.root}/{rel}", entry, handler, shared)
            for rel, entry, shared, handler in self.service.bindings()
        ]
        interval = settings.get_float("DOVECOTE_METRICS_INTERVAL", metrics.INTERVAL, 0, 3600)
        self.meter = metrics.meter_for(self.root, interval)
        self.dispatcher = Dispatcher(
            self.name,
            settings,
            bindings,
            ack=self.feed.ack,
            park=self._publish_letter,
            on_query=lambda msg: self.state.answer(msg),
            eager=service_cls.eager_handlers,
            log=self.log,
            meter=self.meter,
            seal=self.seal,
        )
        self.state = StateQuery(
            self.conn, self.bus, self.service, self.presence, self.dispatcher.reject, self.log
        )
        self.arrival = RetainedArrival(
            self.conn, self.bus, self.service, lambda: self.dispatcher.retained_tasks, self.log
        )
        self.marker_topic = self.arrival.topic
        self.reporter = (
            reporter(
                self.meter,
                interval,
                heartbeat=settings.get_float(
                    "DOVECOTE_METRICS_HEARTBEAT", metrics.HEARTBEAT, 0, 86400
                ),
                conn=self.conn,
                link=self.link,
                bus=self.bus,
                service=self.service,
                inflight=lambda: len(self.dispatcher.tasks),
                outbox=self.outbox,
                refused_queries=lambda: self.state.refused,
            )
            if interval
            else None
        )
        self.caps: Capabilities | None = None
        self.declared = capabilities.declared(settings.get_str("DOVECOTE_BROKER_CAPABILITIES", ""))
        self.plan: pool.Plan | None = None
        self.stopping = asyncio.Event()
        self.supervisor_fd = lifeline.from_env(settings.env)  # None: not run by a supervisor
        self._plan_subscriptions(bindings)

    def _on_message(self, msg: Message) -> None:
        if msg.topic == self.marker_topic:
            self.arrival.on_marker(msg)
            return
        self.dispatcher.on_message(msg)  # looked up per message: tests may swap it

    def _waiting(self) -> int:
        """What the link shows as waiting: the outbox's rows, else paho's unacknowledged."""
        return len(self.outbox) if self.outbox is not None else self.conn.unacknowledged

    def _plan_subscriptions(self, bindings: list[Binding]) -> None:
        named = [(b.filter, getattr(b.handler, "__name__", "?")) for b in bindings]
        pool.check(
            [n for n, b in zip(named, bindings, strict=True) if b.shared],
            [n for n, b in zip(named, bindings, strict=True) if not b.shared],
        )
        # The command inbox is pooled: an unknown command is dead-lettered once, not N times.
        self.pooled = pool.minimal([self.inbox, *(b.filter for b in bindings if b.shared)])
        query = self.state.topic
        self.plain = pool.minimal([query, *(b.filter for b in bindings if not b.shared)])
        self.shares_work = any(b.shared for b in bindings)
        # What this worker would subscribe to where shared subscriptions work (for logs).
        self.filters = [f"$share/{self.name}/{f}" for f in self.pooled] + self.plain

    def _publish_letter(self, topic: str, payload: bytes, reason: str, attempts: int) -> None:
        limit = self.settings.max_payload_bytes
        flag = letters.letter(
            self.bus.actor, topic, payload, reason, attempts, limit, self.seal.sign
        )
        self.bus.publish(topics.DEADLETTER, flag, service=self.name)

    # --- the connection's events --------------------------------------------------------

    def _on_connected(self, session_present: bool) -> None:
        self.arrival.connected()
        self.state.connected()

    def _on_subscribed(self) -> None:
        """The broker granted this connection's subscriptions: usable, so say so."""
        self.conn.publish(self.presence.topic, self.presence.join(), 1, True)
        self.link.went_up()

    def _on_lost(self) -> None:
        self.link.went_down()

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Check the broker, open the service's resources, then subscribe and connect.

        The check comes first: once ``setup`` has opened a server (the gateway's port), the
        subscriptions should follow at once, not a broker round trip later.
        """
        self.caps = self.declared or await capabilities.probe(
            self.settings.broker, self.root, self.client_id, connect=self._connect
        )
        if self.outbox is not None:
            self.outbox.resend(self.log)  # queued in paho; out as soon as the connection is up
        if self.service.keeps_record:
            self.service.record.open()
        await self.service.setup()
        # 1: the only worker of its service (``dovecote run`` says so): plain subscriptions,
        # which survive a Mosquitto restart where $share ones do not (dovecote/pool.py).
        alone = self.settings.get_int("DOVECOTE_POOL_SIZE", 0, 0, 64) == 1
        self.plan = plan = pool.plan(
            self.name,
            self.settings.instance,
            self.pooled,
            self.plain,
            self.caps,
            alone,
            queue=bool(self.feed.urls),
        )
        await self.feed.start(plan, self._on_message)
        self.conn.unsubscribe(*plan.unsubscribe)
        for f in plan.subscribe:
            self.conn.subscribe(f, 1)
        self.conn.subscribe(self.marker_topic, 1)  # last: its marker follows the rest
        if self.fresh:
            await forget_session(self._connect, self.settings, self.client_id)
        self.state.wanted = needs_asking(self.root, plan.subscribe, self.caps)
        self.conn.start()
        if self.reporter is not None:
            self.reporter.start()
        log_start(self, plan, alone)

    async def run(self) -> int:
        """Until signalled (or its supervisor is gone): 0. 1: its connection stopped
        reconnecting for good; it stopped as on a signal (``run`` exits with it)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        if self.supervisor_fd is not None:
            lifeline.watch(self.supervisor_fd, self._supervisor_gone)
        # A signal while still waiting for the broker must stop us too.
        starting = loop.create_task(self.start())
        stopping = loop.create_task(self.stopping.wait())
        # Its connection may also stop reconnecting for good (a bug in it): alive but cut
        # off, this worker would hold its client id and say nothing; it exits instead.
        broken = loop.create_task(self.conn.wait_broken())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        elif starting.exception() is not None:
            stopping.cancel()
            broken.cancel()
            starting.result()  # why this worker cannot start: exit with it, as before
        await asyncio.wait({stopping, broken}, return_when=asyncio.FIRST_COMPLETED)
        if broken.done():
            self.log.critical(
                "no longer connecting to the broker (%r): stopping, with exit code 1, to be "
                "restarted by `dovecote run` or systemd",
                broken.result(),
            )
            stopping.cancel()
            await self.shutdown()
            return 1
        broken.cancel()
        await self.shutdown()
        return 0

    def _supervisor_gone(self) -> None:
        self.log.warning("the `dovecote run` that started this worker is gone: stopping")
        self.stopping.set()

    async def shutdown(self) -> None:
        self.log.info("stopping")
        self.feed.pause()
        self.arrival.cancel()
        self.state.cancel()
        if self.reporter is not None:
            await self.reporter.stop()
        await self.service.teardown()
        tasks = self.dispatcher.tasks
        if tasks:  # let handlers in flight finish (bounded); unacked ones come back
            await asyncio.wait(set(tasks), timeout=5)
        await self.feed.stop()  # what was handed on and not acked goes back to the pool
        with contextlib.suppress(Exception):
            self.conn.publish(self.presence.topic, self.presence.leave(), 1, True)
        await self.conn.stop()
        if self.fresh and not await forget_session(
            self._connect, self.settings, self.client_id, FORGET_TIMEOUT
        ):
            self.log.warning(
                "could not clear this worker's session at %s within %.0f s: what is queued "
                "in it is dropped at its next start, or when the broker expires it",
                self.settings.broker.redacted(),
                FORGET_TIMEOUT,
            )
        if self.outbox is not None:
            self.outbox.close(self.log)
        if self.service.keeps_record:
            self.service.record.close()  # after the last handler that could write it
        self.seal.close()
        self.log.info("stopped")


async def forget_session(
    connect: Connect, settings: Settings, client_id: str, timeout: float | None = None
) -> bool:
    """Clear a worker's session: a clean connection with its client id, subscribing nothing,
    then a clean disconnect. The session its own connection then opens is persistent, so it
    survives losing a broker node; cleared here, it has no backlog from before this worker
    started, as a clean session would not. False: the broker could not be reached within
    ``timeout`` (None: wait for it, retrying)."""
    wiper = connect(
        settings.broker,
        client_id,
        on_message=lambda _: None,
        clean_session=True,
        keepalive=settings.keepalive,
        manual_ack=False,
        quiet=True,
    )
    wiper.start()
    try:
        await wiper.wait_connected(timeout)
    except (TimeoutError, BusError):
        return False
    finally:
        await wiper.stop(FORGET_TIMEOUT)
    return True


def run(service_cls: type[Service]) -> None:
    """The whole ``__main__`` of a service: configure, connect, serve until signalled."""
    try:
        settings = Settings.from_env()
        repeats = repeats_from(settings.get_str("LOG_REPEATS", "5/60"))
        setup_logging(
            settings.log_level, settings.log_format, service_cls.name, settings.instance, repeats
        )
        if settings.instance == instance.AUTO:  # unique across machines, stable (instance.py)
            found = instance.claim(settings.env, settings.root, service_cls.name, settings.data_dir)
            settings = dataclasses.replace(settings, instance=found)
            setup_logging(settings.log_level, settings.log_format, service_cls.name, found, repeats)
        worker = Worker(service_cls, settings)  # a service reads its own settings here
    except ConfigError as exc:
        print(f"{service_cls.name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    code = asyncio.run(worker.run())
    if code:
        raise SystemExit(code)


__all__ = ["Worker", "run"]
