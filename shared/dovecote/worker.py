"""One service instance on one MQTT connection: start, presence, stop.

``run(ServiceClass)`` is the whole ``__main__`` of a service. The ``Worker`` it makes:

- checks what the broker really delivers (``dovecote.capabilities``) and plans the pool's
  subscriptions (``dovecote.pool``);
- opens the service's resources (``Service.setup``), subscribes, connects, and once the
  broker has granted its subscriptions announces itself on ``services/<service>/<instance>``
  (retained Join; its Last Will is a Leave) and says so on ``bus.link`` (``dovecote.link``);
- keeps a persistent session: on a RabbitMQ cluster it is a quorum queue, which outlives
  the node it was made on. A service that wants no backlog from before it started (the
  gateway: ``Service.fresh_session``) has its session cleared at start and at a clean stop
  instead of a clean session, whose queue RabbitMQ 3.10 keeps on one node: with that node
  down, the client id could subscribe nowhere (issue 22);
- hands every message to its ``Dispatcher`` (``dovecote.dispatch``), where a message's whole
  path is;
- answers the state query (``services/query``): re-announces itself and has its service
  republish the state topics it owns, for a subscriber whose broker node does not hold
  them (RabbitMQ: no retained messages to wildcards, and a retained store per node); asks
  it on connecting when it needs it. Both coalesced (``dovecote.throttle``): a reconnecting
  worker cannot make the federation republish its state at every reconnect;
- tells the service once the retained messages of its subscriptions have arrived
  (``Service.retained_arrived``: a marker it published after subscribing came back);
- keeps an outbox for durable publishes (``dovecote.outbox``) when the service asks;
- measures itself and reports on ``metrics/<service>/<instance>`` (``dovecote.metrics``);
- stops on SIGTERM/SIGINT, or when the ``dovecote run`` that started it is gone
  (``dovecote.lifeline``): teardown, handlers in flight finish (bounded), a Leave, a clean
  disconnect; and the same, then exit code 1, should its connection ever stop reconnecting
  (a bug in it): a restart brings it back, and no live process sits cut off holding its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Literal

from dovecote import activity as act
from dovecote import (
    capabilities,
    instance,
    letters,
    lifeline,
    metrics,
    pool,
    poolqueue,
    redelivery,
    topics,
)
from dovecote.capabilities import Capabilities
from dovecote.config import ConfigError, Settings
from dovecote.dispatch import Binding, Dispatcher
from dovecote.errors import BusError, InvalidActivity
from dovecote.link import Link
from dovecote.logs import repeats_from, setup_logging
from dovecote.mqtt import Connection, Message, Will
from dovecote.outbox import Outbox
from dovecote.service import Bus, Service, inbox
from dovecote.throttle import Throttle
from dovecote.transport import Connect, Transport

# A worker asks for the federation's state at most this often, however often it reconnects,
# and answers others' questions at most this often, however many ask (seconds).
ASK_EVERY = 2.0
ANSWER_EVERY = 1.0
FORGET_TIMEOUT = 2.0  # seconds a stopping worker tries to clear its fresh session


class Worker:
    """Runs one service instance on one MQTT connection."""

    def __init__(
        self, service_cls: type[Service], settings: Settings, connect: Connect = Connection
    ) -> None:
        """``connect``: how to reach the bus; a test's in-memory one (``dovecote.testing``)."""
        self.settings = settings
        self._connect = connect
        self.name = service_cls.name
        self.root = settings.root
        self.log = logging.getLogger(f"dovecote.{self.name}")
        self.client_id = f"{settings.root}-{self.name}-{settings.instance}"
        self.presence_topic = topics.PRESENCE.address(
            self.root, service=self.name, instance=settings.instance
        )
        self.inbox = inbox(self.root, self.name)
        self.query_topic = topics.PRESENCE_QUERY.address(self.root)
        # Comes back after the retained messages of this worker's subscriptions: published
        # on the same connection after its SUBSCRIBE, which the broker answers first.
        token = f"{self.name}-{settings.instance}"[:64]
        self.marker_topic = topics.PROBE.address(self.root, token=token, check="marker")
        self._marker: str | None = None  # the id of the marker in flight
        self._arrived: asyncio.Task[None] | None = None
        self.fresh = service_cls.fresh_session
        self.conn: Transport = connect(
            settings.broker,
            self.client_id,
            on_message=self._on_message,
            clean_session=False,  # a fresh session is cleared by ``_forget_session`` instead
            keepalive=settings.keepalive,
            will=Will(self.presence_topic, self._presence("Leave", "offline")),
            on_connected=self._on_connected,
            on_subscribed=self._on_subscribed,
            on_lost=self._on_lost,
        )
        self.outbox: Outbox | None = None
        if service_cls.outbox:
            folder = settings.get_str("DOVECOTE_OUTBOX_DIR", str(settings.data_dir / "outbox"))
            self.outbox = Outbox(
                Path(folder) / f"{self.client_id}.sqlite3",
                settings.get_int("DOVECOTE_OUTBOX_LIMIT", 10_000, 1, 1_000_000),
            )
        durable = self._publish_durable if self.outbox is not None else None
        outbox = self.outbox
        self.link = Link(
            (lambda: len(outbox)) if outbox is not None else (lambda: self.conn.unacknowledged)
        )
        self.bus = Bus(
            self.conn.publish,
            self.name,
            settings,
            durable,
            operator=service_cls.operator,
            link=self.link,
        )
        self.service = service_cls(self.bus, settings)
        # Signs the letters this worker parks; checks those sent back (dovecote.redelivery).
        self.seal = redelivery.Seal.for_service(settings, self.name)
        self.refused_queries = 0  # garbage on services/query another service keeps
        interval = settings.get_float("DOVECOTE_METRICS_INTERVAL", metrics.INTERVAL, 0, 3600)
        self.meter = metrics.Meter() if interval else metrics.Unmetered()
        self.reporter = self._reporter(interval) if interval else None
        bindings = [
            Binding(f"{self.root}/{rel}", entry, handler, shared)
            for rel, entry, shared, handler in self.service.bindings()
        ]
        raw_amqp = settings.get_str("DOVECOTE_AMQP_URL", "")
        self.amqp_urls = poolqueue.parse_amqp_urls(raw_amqp) if raw_amqp else []
        self.queue: poolqueue.PoolQueue | None = None  # the pool's queue, where used
        self.dispatcher = Dispatcher(
            self.name,
            settings,
            bindings,
            ack=self._ack,
            park=self._publish_letter,
            on_query=self._answer_state_query,
            eager=service_cls.eager_handlers,
            log=self.log,
            meter=self.meter,
            seal=self.seal,
        )
        self.caps: Capabilities | None = None
        self.declared = capabilities.declared(settings.get_str("DOVECOTE_BROKER_CAPABILITIES", ""))
        self.plan: pool.Plan | None = None
        self._ask_state = False
        self.asking = Throttle(ASK_EVERY, self._ask_for_state)
        self.answering = Throttle(ANSWER_EVERY, self._announce_state)
        self.stopping = asyncio.Event()
        self.supervisor_fd = lifeline.from_env(settings.env)  # None: not run by a supervisor
        self._plan_subscriptions(bindings)

    def _on_message(self, msg: Message) -> None:
        if msg.topic == self.marker_topic:
            self._on_marker(msg)
            return
        self.dispatcher.on_message(msg)  # looked up per message: tests may swap it

    def _ack(self, mid: int, qos: int) -> None:
        if poolqueue.is_queue_mid(mid):
            if self.queue is not None:
                self.queue.ack(mid)
        else:
            self.conn.ack(mid, qos)

    def _plan_subscriptions(self, bindings: list[Binding]) -> None:
        named = [(b.filter, getattr(b.handler, "__name__", "?")) for b in bindings]
        pool.check(
            [n for n, b in zip(named, bindings, strict=True) if b.shared],
            [n for n, b in zip(named, bindings, strict=True) if not b.shared],
        )
        # The command inbox is pooled: an unknown command is dead-lettered once, not N times.
        self.pooled = pool.minimal([self.inbox, *(b.filter for b in bindings if b.shared)])
        self.plain = pool.minimal([self.query_topic, *(b.filter for b in bindings if not b.shared)])
        self.shares_work = any(b.shared for b in bindings)
        # What this worker would subscribe to where shared subscriptions work (for logs).
        self.filters = [f"$share/{self.name}/{f}" for f in self.pooled] + self.plain

    # --- publishing: letters and the outbox ------------------------------------------------

    def _publish_letter(self, topic: str, payload: bytes, reason: str, attempts: int) -> None:
        limit = self.settings.max_payload_bytes
        flag = letters.letter(
            self.bus.actor, topic, payload, reason, attempts, limit, self.seal.sign
        )
        self.bus.publish(topics.DEADLETTER, flag, service=self.name)

    def _publish_durable(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Outbox first, then the broker; the row goes when the broker acknowledges it."""
        outbox = self.outbox
        assert outbox is not None
        seq = outbox.add(topic, payload, qos, retain)
        try:
            self.conn.publish(topic, payload, qos, retain, on_acked=lambda: outbox.remove(seq))
        except BusError:
            outbox.remove(seq)
            raise
        if not self.link.up:
            self.link.changed()  # one more waits: whoever shows the outbox's depth says so

    def _resend_outbox(self) -> None:
        """What a previous run of this worker promised and the broker never acknowledged."""
        if self.outbox is None:
            return
        outbox = self.outbox
        left = outbox.open()
        for p in left:
            done = functools.partial(outbox.remove, p.seq)
            self.conn.publish(p.topic, p.payload, p.qos, p.retain, on_acked=done)
        if left:
            self.log.warning(
                "sending again %d message(s) from the outbox %s that the broker had not "
                "acknowledged when this worker last stopped",
                len(left),
                self.outbox.path,
            )

    # --- metrics ---------------------------------------------------------------------

    def _reporter(self, interval: float) -> metrics.Reporter:
        outbox = self.outbox
        sources = metrics.Sources(
            connected=lambda: self.link.up,
            connects=lambda: self.conn.connects,
            published=lambda: self.conn.published,
            unacknowledged=lambda: self.conn.unacknowledged,
            inflight=lambda: len(self.dispatcher.tasks),
            outbox=(lambda: len(outbox)) if outbox is not None else None,
            readings=self._readings,
        )

        def publish(measurements: act.WorkerMeasurements) -> None:
            self.service.measured(measurements)
            report = act.MetricsReport(
                **act.envelope(), type="Update", actor=self.bus.actor, object=measurements
            )
            self.bus.publish(
                topics.METRICS, report, service=self.name, instance=self.settings.instance
            )

        return metrics.Reporter(
            self.meter,
            sources,
            publish,
            root=self.root,
            service=self.name,
            instance=self.settings.instance,
            interval=interval,
        )

    def _readings(self) -> dict[str, float]:
        found = dict(self.service.readings())
        if self.name != letters.KEEPER:
            found["queries_refused_total"] = self.refused_queries
        return found

    # --- presence ----------------------------------------------------------------------

    def _presence(
        self, kind: Literal["Join", "Leave"], status: Literal["online", "offline"]
    ) -> bytes:
        worker = act.ServiceInstance(
            type="Service",
            id=f"urn:dovecote:service:{self.name}:{self.settings.instance}",
            name=self.name,
            instance=self.settings.instance,
            status=status,
            pid=os.getpid(),
            host=os.uname().nodename[:200],
        )
        return act.encode(
            act.Presence(**act.envelope(), type=kind, actor=act.service(self.name), object=worker)
        )

    def _on_connected(self, session_present: bool) -> None:
        if self._arrived is None:
            marker = act.Activity(
                **act.envelope(),
                type="Create",
                actor=self.bus.actor,
                object={"type": "Note", "name": "marker"},
            )
            self._marker = marker.id
            self.conn.publish(self.marker_topic, act.encode(marker), 1, False)
        if self._ask_state:
            self.asking.request()  # at once, unless it asked less than ASK_EVERY ago

    def _on_subscribed(self) -> None:
        """The broker granted this connection's subscriptions: usable, so say so."""
        self.conn.publish(self.presence_topic, self._presence("Join", "online"), 1, True)
        self.link.went_up()

    def _on_lost(self) -> None:
        self.link.went_down()

    def _ask_for_state(self) -> bool:
        # Sent after this connection's SUBSCRIBE: the answers match it. Disconnected (the
        # coalesced run came late): not asked, and the next connection asks at once.
        if not self.conn.connected.is_set():
            return False
        question = act.Activity(
            **act.envelope(),
            type="Question",
            actor=self.bus.actor,
            object={"type": "Collection", "name": "services online and state now"},
        )
        self.bus.publish(topics.PRESENCE_QUERY, question)
        return True

    def _answer_state_query(self, msg: Message) -> None:
        """Someone cannot trust its broker node for retained presence and state: say we are
        here, have the service republish the state it owns (``Service.republish_state``),
        and publish again the retained state (on topics with parameters) sent since we started.
        Coalesced (``answering``): questions within ``ANSWER_EVERY`` of an answer get one
        more answer, at its end; the answers are broadcasts, so every asker gets them.

        Only an activity is a question: garbage is not answered (a flood of junk must not
        make every worker republish). It is parked by the keeper of dead letters alone
        (``letters.KEEPER``): every worker of every service gets this broadcast, and each
        parking its copy multiplied a flood by the number of services in the store (10 MB
        of junk grew it by 70 MB). The others count it (``queries_refused_total``) and log
        it at debug level: the letter the keeper parks is the record.
        """
        try:
            topics.PRESENCE_QUERY.codec.decode(msg.payload)
        except InvalidActivity as exc:
            if self.name == letters.KEEPER:
                self.dispatcher.reject(msg, str(exc))
                return
            self.refused_queries += 1
            self.log.debug("refused a presence query (%s parks it): %s", letters.KEEPER, exc)
            self.conn.ack(msg.mid, msg.qos)
            return
        self.answering.request()
        self.conn.ack(msg.mid, msg.qos)

    def _announce_state(self) -> None:
        self.conn.publish(self.presence_topic, self._presence("Join", "online"), 1, True)
        try:
            self.service.republish_state()
        except Exception:  # a bug there must not stop the worker answering what it can
            self.log.exception("republishing state for %s failed", self.query_topic)
        for topic, (payload, qos) in list(self.bus.retained_sent.items()):
            self.conn.publish(topic, payload, qos, True)  # the same ids: repeats, not news

    # --- retained state: when it has all arrived --------------------------------------

    def _on_marker(self, msg: Message) -> None:
        """Our marker is back: the retained messages subscribed before it came first (a
        copy left from an earlier run of this worker has another id, and is ignored)."""
        self.conn.ack(msg.mid, msg.qos)
        try:
            mine = topics.PROBE.codec.decode(msg.payload).id == self._marker
        except InvalidActivity:
            mine = False
        if mine and self._arrived is None:
            self._arrived = asyncio.get_running_loop().create_task(self._retained_arrived())

    async def _retained_arrived(self) -> None:
        # The retained messages' handlers still running, if any (not every handler: one may
        # itself be waiting for this, as the builder's first Start does).
        handling = set(self.dispatcher.retained_tasks)
        if handling:
            await asyncio.wait(handling, timeout=10)
        self.conn.unsubscribe(self.marker_topic)
        try:
            await self.service.retained_arrived()
        except Exception:
            self.log.exception("retained_arrived failed")

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Check the broker, open the service's resources, then subscribe and connect.

        The check comes first: once ``setup`` has opened a server (the gateway's port), the
        subscriptions should follow at once, not a broker round trip later.
        """
        self.caps = self.declared or await capabilities.probe(
            self.settings.broker, self.root, self.client_id, connect=self._connect
        )
        self._resend_outbox()  # queued in paho; out as soon as the connection is up
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
            queue=bool(self.amqp_urls),
        )
        if plan.queued:
            self.queue = poolqueue.PoolQueue(
                self.amqp_urls,
                poolqueue.queue_name(self.root, self.name),
                plan.pooled,
                self._on_message,
            )
            self.queue.start()
            # Bound before this worker says it is online (its Join): from then on what is
            # published reaches the pool, as with MQTT subscriptions made before connecting.
            await self.queue.ready.wait()
        self.conn.unsubscribe(*plan.unsubscribe)
        for f in plan.subscribe:
            self.conn.subscribe(f, 1)
        self.conn.subscribe(self.marker_topic, 1)  # last: its marker follows the rest
        if self.fresh:
            await self._forget_session()
        # A broker that gives no retained message to a wildcard is RabbitMQ, whose retained
        # store is also per node: in a cluster, the node this worker is on may hold no or an
        # old copy of what was published via another. The owners answer the query. The
        # wildcard of a retained topic with parameters (presence, a card's state/x/{user})
        # misses them there too.
        samples = [
            t.address(self.root, **dict.fromkeys(t.params, "x"))
            for t in topics.all_topics()
            if t.retain and t.params
        ]
        state = [
            t.address(self.root) for t in topics.all_topics() if t.kind == "state" and not t.params
        ]
        self._ask_state = not self.caps.retained_to_wildcards and any(
            f in state or any(f != sample and topics.matches(f, sample) for sample in samples)
            for f in plan.subscribe
        )
        self.conn.start()
        if self.reporter is not None:
            self.reporter.start()
        self._log_start(plan, alone)

    def _log_start(self, plan: pool.Plan, alone: bool) -> None:
        assert self.caps is not None
        broker = self.settings.broker.redacted()
        self.log.info(
            "%s worker %s starting; broker %s (%s); subscribed to %s",
            self.name,
            self.settings.instance,
            broker,
            self.caps.describe(),
            ", ".join(plan.subscribe),
        )
        if plan.queued:
            self.log.info(
                "broker %s does not deliver shared subscriptions ($share): the pool reads "
                "%s from its queue %s over AMQP (competing consumers)",
                broker,
                ", ".join(plan.pooled),
                poolqueue.queue_name(self.root, self.name),
            )
        # The inbox alone (no shared handler, e.g. the gateway) is nothing to warn about.
        elif not self.caps.shared_subscriptions and not alone and self.shares_work:
            if plan.standby:
                self.log.warning(
                    "broker %s does not deliver shared subscriptions ($share): this worker "
                    "(%s) stands by and handles only %s; worker %s of %s handles %s alone. "
                    "Nothing is lost or handled twice; to spread the load, use a broker with "
                    "shared subscriptions (see docs/brokers.md)",
                    broker,
                    self.settings.instance,
                    ", ".join(self.plain),
                    pool.LEADER,
                    self.name,
                    ", ".join(plan.pooled),
                )
            else:  # a pool of one is fine: worth knowing, not a warning
                self.log.info(
                    "broker %s does not deliver shared subscriptions ($share): this worker "
                    "handles %s alone; other workers of %s stand by (see docs/brokers.md)",
                    broker,
                    ", ".join(plan.pooled),
                    self.name,
                )
        if self._ask_state:
            self.log.info(
                "broker %s does not deliver retained messages to wildcards (and may keep "
                "them per node): asking every worker to announce itself and the owners "
                "of state to republish it, on %s",
                broker,
                self.query_topic,
            )

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

    async def _forget_session(self, timeout: float | None = None) -> bool:
        """Clear this worker's session: a clean connection with its client id, subscribing
        nothing, then a clean disconnect. The session its own connection then opens is
        persistent, so it survives losing a broker node; cleared here, it has no backlog
        from before this worker started, as a clean session would not. False: the broker
        could not be reached within ``timeout`` (None: wait for it, retrying)."""
        wiper = self._connect(
            self.settings.broker,
            self.client_id,
            on_message=lambda _: None,
            clean_session=True,
            keepalive=self.settings.keepalive,
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

    def _supervisor_gone(self) -> None:
        self.log.warning("the `dovecote run` that started this worker is gone: stopping")
        self.stopping.set()

    async def shutdown(self) -> None:
        self.log.info("stopping")
        if self.queue is not None:
            self.queue.pause()
        if self._arrived is not None and not self._arrived.done():
            self._arrived.cancel()
        self.asking.cancel()
        self.answering.cancel()
        if self.reporter is not None:
            await self.reporter.stop()
        await self.service.teardown()
        tasks = self.dispatcher.tasks
        if tasks:  # let handlers in flight finish (bounded); unacked ones come back
            await asyncio.wait(set(tasks), timeout=5)
        if self.queue is not None:  # what was handed on and not acked goes back to the pool
            await self.queue.stop()
        with contextlib.suppress(Exception):
            self.conn.publish(self.presence_topic, self._presence("Leave", "offline"), 1, True)
        await self.conn.stop()
        if self.fresh and not await self._forget_session(FORGET_TIMEOUT):
            self.log.warning(
                "could not clear this worker's session at %s within %.0f s: what is queued "
                "in it is dropped at its next start, or when the broker expires it",
                self.settings.broker.redacted(),
                FORGET_TIMEOUT,
            )
        if self.outbox is not None:
            if len(self.outbox):
                self.log.warning(
                    "%d message(s) not acknowledged by the broker stay in the outbox %s; "
                    "they are sent at the next start",
                    len(self.outbox),
                    self.outbox.path,
                )
            self.outbox.close()
        self.seal.close()
        self.log.info("stopped")


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
