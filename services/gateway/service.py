"""Gateway handlers: what browsers may see, forwarded as the bytes the broker sent.

| listens to                                   | publishes                            |
|----------------------------------------------|--------------------------------------|
| events/# (every event, also of new services) | commands/builder/start, stop         |
| state/* (retained, topic by topic; any       | events/image/created (on upload)     |
|   service's, its own topics.py's included)   |                                      |
| services/+/+ (presence, retained)            | events/people/followed, unfollowed   |
| users/+/notifications (to that person only)  | commands/notifier/inbox, read        |
| users/+/inbox (to that person only)          | commands/deadletters/list, replay    |
| replies/notifier/+ (answers to this worker)  |   (an operator's, from their page)   |
| metrics/+/+ (every worker's measurements)    | replies/gateway/{request} (traces)   |
| deadletter/+ (for traces only)               |                                      |
| replies/deadletters/+ (answers to its page)  |                                      |
| commands/gateway/trace (`dovecote trace`)    |                                      |

Commands, dead letters, metrics, replies and other people's notifications never reach a
browser. Every activity with a correlation id it hears (or sends) goes into the trace
index (``operations/traces.py``). The HTTP side is assembled in ``web/app.py`` from one
module per feature.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import orjson
from aiohttp import web

# Every service's contract (services/contracts.py) registers its topics: a new service's
# retained state, and how the dashboard shows it (its display hint), reach the pages with
# no edit here (state_cards.py).
import services.contracts  # noqa: F401
from dovecote import Bus, Delivery, Service, handles, heap, topics
from dovecote import activity as act
from dovecote.config import ConfigError, Settings
from dovecote.topics import P
from services.gateway.accounts import invites, people, signouts
from services.gateway.accounts.demo import DemoPeople
from services.gateway.accounts.guesses import DeviceCookies
from services.gateway.accounts.people import People
from services.gateway.bus import federation_status, promises, reachability
from services.gateway.bus.hub import REPLAY_BYTES, Hub
from services.gateway.bus.questions import Questions
from services.gateway.context import FEED_SIZE, Context, Images
from services.gateway.images import checks
from services.gateway.images.budget import DECODE_BUDGET, MemoryBudget
from services.gateway.images.placement import image_store, shared_allowance
from services.gateway.operations.telemetry import Fleet
from services.gateway.operations.toolkit import (
    ASK_TIMEOUT,
    TRACE_INDEX_BYTES,
    Operations,
    operators_from,
)
from services.gateway.operations.traces import TraceIndex, context_of_letter
from services.gateway.social.inbox_client import InboxClient
from services.gateway.social.person_as2 import Directory
from services.gateway.topics import SIGNINS_ENDED, SignInsEnded
from services.gateway.web import lifecycle, sessions
from services.gateway.web.app import create_app
from services.gateway.web.badrequests import quiet_client_faults
from services.gateway.web.limits import Limits
from services.notifier import topics as notifier_topics

# Retained state is subscribed topic by topic: RabbitMQ delivers retained messages only
# to exact-topic subscriptions (docs/brokers.md). A shown state topic with parameters
# (state/badges/{user}) needs its wildcard: there RabbitMQ sends what is published after
# the gateway subscribed, and what was retained before through the presence query (a
# worker answers with what it has published since it started: dovecote.worker).
STATE_TOPICS = [t for t in topics.all_topics() if t.kind == "state" and not t.params]
SHOWN_WITH_PARAMS = [t for t in topics.all_topics() if t.display is not None and t.params]
SIGNUP_SAYS = {
    "open": "open to anyone (SIGNUP=open)",
    "invite": "by invitation (SIGNUP=invite)",
    "closed": "closed (SIGNUP=closed): operators make accounts with `dovecote admin gateway add`",
}


class Gateway(Service):
    name = "gateway"
    eager_handlers = True  # forwarding bytes never awaits: no Task per message
    # Browsers rebuild everything from retained state on reconnect: a gateway that was down
    # has no use for a backlog of stale events, so its session starts empty (and persists
    # while it runs: a lost broker node does not cut it off, docs/deploying.md).
    fresh_session = True
    # An upload answered 201 and a command answered 202 are promises made to a browser:
    # their events go through a durable outbox, so a crash before the broker's PUBACK (a
    # broker outage, a kill -9) cannot lose them. Bounded: when full, the gateway says 503.
    outbox = True
    # Its operations page lists and replays dead letters for the people in OPERATORS.
    operator = True

    def __init__(self, bus: Bus, settings: Settings) -> None:
        super().__init__(bus, settings)
        # Bytes of recent frames held for pages that reconnect (0: no page ever resumes).
        self.hub = Hub(settings.get_int("GATEWAY_REPLAY_BYTES", REPLAY_BYTES, 0, 1024**3))
        self.feed: deque[bytes] = deque(maxlen=FEED_SIZE)  # what a page's feed is drawn with
        self.directory = Directory(settings.public_url)
        self.people = People.of(settings)
        self.signup = invites.signup_mode(settings.env.get("SIGNUP", "open"))
        self.sweep_every = settings.get_float("SIGNIN_SWEEP", signouts.SWEEP_EVERY, 1.0, 3600.0)
        self.header_timeout = settings.get_float("HTTP_HEADER_TIMEOUT", 15.0, 0.5, 3600.0)
        key = settings.env.get("DOVECOTE_SESSION_KEY", "").strip()
        if not key and not self.people.place.shared:
            raise ConfigError(
                "DOVECOTE_SESSION_KEY is not set: sessions are encrypted with it (`make run` "
                "makes one; see deploy/dovecote.env.example)"
            )
        self.session_key = sessions.check_key(key) if key else ""  # or the store's: below
        self.session_max_age = settings.get_int("SESSION_MAX_AGE", 14 * 86400, 60, 366 * 86400)
        self.demo = DemoPeople(settings.env)
        self.limits = Limits(settings.env)
        self.inbox = InboxClient(self._ask, settings.get_float("INBOX_TIMEOUT", 2.0, 0.1, 60.0))
        self.hashing = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
        self.ops = Operations(
            operators=operators_from(settings.env.get("OPERATORS", "")),
            metrics_token=settings.get_str("METRICS_TOKEN", "") or None,
            fleet=Fleet(),
            traces=TraceIndex(
                settings.get_int("TRACE_INDEX_BYTES", TRACE_INDEX_BYTES, 0, 1024**3),
                settings.root,
            ),
            questions=Questions(self._ask, ASK_TIMEOUT),
        )
        self.traces = self.ops.traces
        self._check_operators()
        if not self.session_key:  # DATABASE_URL: one key for every gateway, made by the first
            self.session_key = sessions.check_key(
                self.people.shared_key(sessions.SHARED_KEY, sessions.new_key)
            )
        self.runner: web.AppRunner | None = None
        self.pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="img")
        max_pixels = settings.get_int("IMAGE_MAX_PIXELS", 40_000_000, 1, 1_000_000_000)
        checks.bound_pillow(max_pixels)
        max_decoded = settings.get_int(
            "IMAGE_MAX_DECODED_BYTES", checks.DEFAULT_MAX_DECODED, 2**20, 2**40
        )
        # Decoding, every request's together, holds at most this; any image under
        # IMAGE_MAX_DECODED_BYTES must fit in it alone (issue 21).
        budget = settings.get_int("IMAGE_DECODE_BUDGET_BYTES", DECODE_BUDGET, max_decoded, 2**40)
        heap.return_large_blocks()  # a decoded image's memory goes back when it is freed
        store = image_store(settings)
        self.images = Images(
            store=store,
            public_url=settings.public_url,
            max_bytes=settings.get_int("IMAGE_MAX_BYTES", 10 * 1024 * 1024, 1024, 1024**3),
            max_pixels=max_pixels,
            max_decoded=max_decoded,
            service_token=settings.env.get("DOVECOTE_SERVICE_TOKEN", "").strip() or None,
            pool=self.pool,
            budget=MemoryBudget(budget),
            allowance=shared_allowance(store, self.limits),
        )

    def _check_operators(self) -> None:
        """Every name in ``OPERATORS`` must be an account (or a demo person about to be
        made): a name that is not would go to whoever signs up with it first."""
        self.people.open()
        coming = {p["id"] for p in people.DEMO_PEOPLE} if self.demo.wanted else set()
        unknown = [name for name in self.ops.unknown(self.people) if name not in coming]
        if unknown:
            self.people.close()
            raise ConfigError(
                f"OPERATORS names {', '.join(unknown)}: no such account, and anyone who signed "
                "up under that name would operate the federation. Make the account first "
                "(`dovecote admin gateway add <name> --operator`), or take the name out of "
                "OPERATORS"
            )

    @handles("events/#", shared=False)  # every worker serves its own browsers
    async def on_event(self, activity: act.Activity, delivery: Delivery) -> None:
        frame = self.hub.broadcast(delivery.topic, delivery.payload, activity.id)
        if frame is not None:  # a redelivery is sent once
            self.feed.append(frame)
        self.traces.add(delivery.topic, activity.context, delivery.payload)

    @handles(*STATE_TOPICS, *SHOWN_WITH_PARAMS, shared=False)
    async def on_state(self, activity: act.Activity, delivery: Delivery) -> None:
        self.hub.broadcast(
            delivery.topic, delivery.payload, activity.id, retain=True, live=not delivery.retained
        )
        if not delivery.retained:  # state from before this worker started: not news
            self.traces.add(delivery.topic, activity.context, delivery.payload)

    @handles(topics.PRESENCE, shared=False)
    async def on_presence(self, presence: act.Presence, delivery: Delivery) -> None:
        # Pages get who is up, not where: pid and host stay on the bus, for operators.
        shown = federation_status.shown(presence)
        self.hub.broadcast(
            delivery.topic, shown, presence.id, retain=True, live=not delivery.retained
        )
        if presence.type == "Leave":  # its metrics stop being current at once, not when due
            self.ops.fleet.left(delivery.params["service"], delivery.params["instance"])
        if not delivery.retained:
            self.traces.add(delivery.topic, presence.context, delivery.payload)

    @handles(
        notifier_topics.NOTIFICATION, shared=False
    )  # every gateway worker: each has its sockets
    async def on_notification(self, note: notifier_topics.Notification, delivery: Delivery) -> None:
        # The topic names the one person it is for: only that person's sockets get it.
        self.hub.send_to_user(delivery.params["user"], delivery.topic, delivery.payload, note.id)
        self.traces.add(delivery.topic, note.context, delivery.payload)

    @handles(notifier_topics.INBOX_STATE, shared=False)
    async def on_inbox(self, inbox: notifier_topics.InboxUpdated, delivery: Delivery) -> None:
        self.hub.send_to_user(delivery.params["user"], delivery.topic, delivery.payload, inbox.id)

    # --- for operators: metrics, traces, dead letters -----------------------------------

    @handles(topics.METRICS, shared=False)  # every worker serves /metrics
    async def on_metrics(self, report: act.MetricsReport, _: Delivery) -> None:
        m = report.object
        if (m.name, m.instance) != (self.name, self.bus.instance):  # its own: ``measured``
            self.ops.fleet.record(m)

    def measured(self, measurements: act.WorkerMeasurements) -> None:
        # Its own report, kept as it is made: a gateway cut off from the bus hears no one,
        # itself included, and its own series (connected 0, its outbox) are what to show.
        self.ops.fleet.record(measurements)

    @handles(topics.DEADLETTER, shared=False)  # a parked message is a step of its trace
    async def on_letter(self, letter: act.DeadLetter, delivery: Delivery) -> None:
        self.traces.add(delivery.topic, context_of_letter(letter), delivery.payload)

    @handles(topics.DEADLETTER_REPLY, shared=False)  # the one that asked takes it
    async def on_letters_answer(self, reply: act.DeadLetterReply, delivery: Delivery) -> None:
        self.ops.questions.answered(reply.inReplyTo, delivery.payload)

    @handles(topics.TRACE_QUERY)  # `dovecote trace`: any worker of the pool answers
    async def on_trace_query(self, query: act.ViewTrace, _: Delivery) -> None:
        request = act.request_key(query.id)
        if request is None:
            self.log.warning("trace query %s has no urn:uuid id: nowhere to answer", query.id)
            return
        answer = act.TraceReply(
            **act.envelope(),
            type="Accept",
            actor=self.bus.actor,
            object=self.traces.find(query.object.context),
            inReplyTo=query.id,
            context=query.context,
        )
        self.bus.publish(topics.TRACE_REPLY, answer, request=request)

    def readings(self) -> Mapping[str, float]:
        held, buffered = self.hub.queued_bytes()
        return {
            "sockets_open": len(self.hub.clients),
            "socket_queue_bytes": held,
            "socket_buffer_bytes": buffered,
            "slow_closes_total": self.hub.slow_closes,
            "replays_total": self.hub.replays,
            "replays_refused_total": self.hub.replays_refused,
            "trace_index_bytes": self.traces.held,
            "trace_contexts": len(self.traces.contexts),
        }

    @handles(notifier_topics.INBOX_REPLY, shared=False)  # every worker; the one that asked takes it
    async def on_inbox_reply(self, reply: notifier_topics.InboxReply, delivery: Delivery) -> None:
        self.inbox.answered(reply.inReplyTo, orjson.loads(delivery.payload)["object"])

    @handles(SIGNINS_ENDED, shared=False)  # every worker closes its own sockets of them
    async def on_signins_ended(self, ended: SignInsEnded, _: Delivery) -> None:
        user = ended.object.attributedTo.preferredUsername
        if user is not None:
            self.hub.close_ended(set(ended.object.items), user)

    async def setup(self) -> None:
        self.images.store.open()
        if self.demo.wanted:
            created = await self.demo.seed(self.people, self.hashing)
            self.log.info(
                "demo people %s: sign in with DEMO_PASSWORD%s",
                ", ".join(p["id"] for p in people.DEMO_PEOPLE),
                f" (new: {', '.join(created)})" if created else "",
            )
        if self.images.service_token is None:
            self.log.warning("DOVECOTE_SERVICE_TOKEN is not set: thumbnail uploads are refused")
        quiet_client_faults()
        ctx = Context(
            hub=self.hub,
            people=self.people,
            directory=self.directory,
            publish=self._publish,
            promise=self._promise,
            root=self.bus.root,
            public_url=self.settings.public_url,
            session_key=self.session_key,
            session_max_age=self.session_max_age,
            inbox=self.inbox,
            limits=self.limits,
            hashing=self.hashing,
            devices=DeviceCookies(self.session_key, self.settings.public_url.startswith("https")),
            signup=self.signup,
            images=self.images,
            feed=self.feed,
            operations=self.ops,
            link=self.bus.link,
            instance=self.bus.instance,
        )
        # Every page says when the bus cannot be reached; open ones are told at each change.
        self.bus.link.watch(lambda link: self.hub.announce(reachability.frame(link)))
        app = create_app(ctx)  # closes the context's sockets, threads and accounts with it
        app.cleanup_ctx.append(
            lifecycle.background(
                "signin-sweep", lambda: signouts.sweep_forever(ctx, self.sweep_every)
            )
        )
        # A connection has this long to send a whole request line and headers (and may stay
        # idle this long between requests): half-sent requests hold no socket for long.
        self.runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=self.header_timeout,
        )
        await self.runner.setup()
        # reuse_port: several gateway workers can serve one port (SO_REUSEPORT).
        site = web.TCPSite(self.runner, self.settings.host, self.settings.port, reuse_port=True)
        await site.start()
        logging.getLogger("dovecote.gateway").info(
            "dashboard at %s/ (listening on %s:%d); sign-up %s",
            self.settings.public_url,
            self.settings.host,
            self.settings.port,
            SIGNUP_SAYS[self.signup],
        )

    def _publish(self, entry: topics.Topic[P], activity: P, /) -> None:
        payload = self.bus.publish(entry, activity, durable=True)
        self._sent(entry, activity, payload)

    async def _promise(self, entry: topics.Topic[P], activity: P, /) -> bool:
        """Publish through the outbox; while the bus is reachable, wait a moment for the
        broker's acknowledgement (``Context.promise``, ``bus/promises.py``)."""
        payload, acked = promises.publish(self.bus, entry, activity)
        self._sent(entry, activity, payload)
        return await promises.kept(acked) if self.bus.link.up else False

    def _ask(self, entry: topics.Topic[P], activity: P, /) -> None:
        """A question (an inbox): not kept in the outbox; unanswered, the page goes on."""
        payload = self.bus.publish(entry, activity)
        self._sent(entry, activity, payload)

    def _sent(self, entry: topics.Topic, activity: act.Activity, payload: bytes) -> None:
        """A command this gateway sent is a step of its trace too (a build's Start); its
        events come back to it on ``events/#`` like everyone's."""
        context = activity.context
        if context is not None and entry.kind == "commands" and not entry.params:
            self.traces.add(entry.address(self.bus.root), context, payload)

    async def teardown(self) -> None:
        if self.runner is not None:  # the app's cleanup: the sweep, sockets, threads, accounts
            await self.runner.cleanup()
        else:  # never served: the accounts store was opened for the operators' check
            self.people.close()
        self.images.store.close()
