"""What a service is: a class with decorated async handlers, and the bus it publishes on.

A service is a class with async handlers marked by ``@handles(topic)``. The decorator only
registers (it does not wrap), so a test calls ``await service.on_start(activity, delivery)``
directly. ``dovecote.run(ServiceClass)`` is the whole ``__main__`` of a service; the worker
it starts (``dovecote.worker``) gives every handler the guarantees of the message path
(``dovecote.dispatch``):

- payloads are size-checked and decoded+validated against the topic's type before a handler
  sees them; what fails is parked on ``deadletter/<service>`` with the reason, and acked;
- QoS 1 messages are acknowledged only after their handler finished, so a killed worker gets
  them again from its persistent session (at least once) ...
- ... and handlers run at most once per activity ``id`` while the worker lives, which with
  an idempotent store makes the effect exactly once;
- N workers of a service form a pool: ``shared=True`` handlers get each message in one
  worker only (``dovecote.pool``);
- a handler that raises is retried a bounded number of times, then dead-lettered; it never
  takes the service down. A handler that knows retrying cannot help (a corrupt image, a
  404) raises ``Unprocessable`` and the message is dead-lettered at once with that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, overload

from dovecote import activity as act
from dovecote import topics
from dovecote.config import Settings
from dovecote.errors import BusError, TopicError, Unprocessable
from dovecote.link import Link
from dovecote.topics import P, Topic

if TYPE_CHECKING:
    from dovecote.keeping import Record

__all__ = [
    "Bus",
    "Delivery",
    "Handler",
    "Publish",
    "Service",
    "Unprocessable",
    "handles",
    "inbox",
]

Handler = Callable[[Any, "Delivery"], Coroutine[Any, Any, None]]
OPERATOR = "operator"  # the publisher of the operators' commands (``dovecote deadletter``)
F = TypeVar("F", bound=Callable[..., Awaitable[None]])
S = TypeVar("S")  # the service a handler is a method of
Q = TypeVar("Q", bound=act.Activity)  # the payloads of a handler's 2nd and 3rd topics
R = TypeVar("R", bound=act.Activity)
# A handler method of a topic whose payload is ``P``: mypy refuses one that takes another
# topic's type (taking a wider one, ``act.Activity``, is fine).
TypedHandler = Callable[[S, P, "Delivery"], Coroutine[Any, Any, None]]

_MARK = "__dovecote_handles__"
RETAINED_KEPT = 1000  # retained topics with parameters a worker can publish again when asked


@overload
def handles(
    target: Topic[P], /, *, shared: bool = ...
) -> Callable[[TypedHandler[S, P]], TypedHandler[S, P]]: ...


@overload
def handles(
    first: Topic[P], second: Topic[Q], /, *, shared: bool = ...
) -> Callable[[TypedHandler[S, P | Q]], TypedHandler[S, P | Q]]: ...


@overload
def handles(
    first: Topic[P], second: Topic[Q], third: Topic[R], /, *, shared: bool = ...
) -> Callable[[TypedHandler[S, P | Q | R]], TypedHandler[S, P | Q | R]]: ...


@overload
def handles(*targets: Topic | str, shared: bool = ...) -> Callable[[F], F]: ...


def handles(*targets: Topic | str, shared: bool = True) -> Callable[[F], F]:
    """Mark a method as the handler of one or more topics.

    A target is a registry ``Topic`` (its parameters become ``+``) or a filter relative to
    the root such as ``"events/#"``. Registry topics type the handler: its activity is their
    payload type (of several topics: a type they all are, such as ``act.Activity``); call
    it with positional arguments. ``shared=True`` (the default): the workers of a pool
    share these messages, each is handled by one of them. ``shared=False``: every worker gets
    every message (commands aimed at whichever worker holds something, state it must know).
    """

    def mark(fn: F) -> F:
        bindings = getattr(fn, _MARK, ())
        setattr(fn, _MARK, (*bindings, *((t, shared) for t in targets)))
        return fn

    return mark


@dataclass(frozen=True, slots=True)
class Delivery:
    """How an activity arrived: the concrete topic, its parameters and the original bytes."""

    topic: str
    params: dict[str, str]
    payload: bytes
    retained: bool
    entry: Topic | None

    @classmethod
    def of(
        cls,
        root: str,
        entry: Topic[P],
        activity: P | Mapping[str, Any],
        retained: bool = False,
        **params: str,
    ) -> Delivery:
        """A delivery as the runtime would make it; for calling handlers in unit tests."""
        return cls(entry.address(root, **params), params, act.encode(activity), retained, entry)


Send = Callable[[str, bytes, int, bool], None]  # topic, payload, qos, retain


class DurableSend(Protocol):
    """The outbox's send (``dovecote.outbox.Durable.publish``): ``on_acked`` runs, on the
    loop, once the broker has acknowledged the message."""

    def __call__(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        retain: bool,
        on_acked: Callable[[], None] | None = None,
    ) -> None: ...


class Publish(Protocol):
    """A function that publishes one activity of a topic's own payload type (a feature of a
    service handed ``Bus.publish``, or a wrapper of it, rather than the whole bus)."""

    def __call__(self, entry: Topic[P], activity: P, /) -> None: ...


class Bus:
    """What a service may do on the bus: publish registered topics, as itself.

    ``durable`` sends through the worker's outbox (``dovecote.outbox``), for services that set
    ``Service.outbox``: what was promised outside the bus (a 201, a 202) survives a crash.
    ``operator``: it may also send the operators' commands (``Service.operator``).
    ``link``: whether the worker can use the bus now, and since when (``dovecote.link``).
    """

    def __init__(
        self,
        send: Send,
        service: str,
        settings: Settings,
        durable: DurableSend | None = None,
        *,
        operator: bool = False,
        link: Link | None = None,
    ) -> None:
        self._send = send
        self.link = link if link is not None else Link()
        self._durable = durable
        self.service = service
        self.publishers = ("*", service, OPERATOR) if operator else ("*", service)
        self.settings = settings
        self.root = settings.root
        self.instance = settings.instance
        self.actor = act.service(service)
        # The retained messages published on topics with parameters, newest per topic: a
        # broker that sends retained messages to no wildcard subscription (RabbitMQ) makes
        # the worker publish them again when asked (the presence query).
        self.retained_sent: dict[str, tuple[bytes, int]] = {}

    def address(self, entry: Topic, **params: str) -> str:
        return entry.address(self.root, **params)

    def publish(
        self,
        entry: Topic[P],
        activity: P,
        *,
        durable: bool = False,
        on_acked: Callable[[], None] | None = None,
        **params: str,
    ) -> bytes:
        """Validate against the registry, encode, and send. Returns the bytes.

        ``activity`` is the topic's payload type (a registry topic is a ``Topic[P]``), made
        with its fields named: mypy refuses one that forgets a field, a dict, or another
        topic's type. The registry's decoder then checks what a type cannot say (an IRI's
        form, a length), so such a bug fails here, loudly, and never reaches a subscriber.

        ``durable=True``: written to the outbox first; ``OutboxFull`` (a ``BusError``) when it
        is full, and nothing is sent. ``on_acked`` (durable only) runs once the broker has
        acknowledged it: from then on it is the broker's, whatever becomes of this machine.
        """
        if entry.publisher not in self.publishers:
            raise TopicError(
                f"{self.service} may not publish {entry.pattern} (publisher: {entry.publisher})"
            )
        payload = act.encode(activity)
        entry.codec.decode(payload)  # a bug here must fail loudly, not reach subscribers
        topic = entry.address(self.root, **params)
        if durable:
            if self._durable is None:
                raise BusError(f"{self.service} has no outbox: set `outbox = True` on it")
            self._durable(topic, payload, entry.qos, entry.retain, on_acked)
        elif on_acked is not None:
            raise ValueError("on_acked needs durable=True (a QoS 1 send through the outbox)")
        else:
            self._send(topic, payload, entry.qos, entry.retain)
        if entry.retain and entry.params:
            self.retained_sent.pop(topic, None)
            self.retained_sent[topic] = (payload, entry.qos)
            if len(self.retained_sent) > RETAINED_KEPT:
                del self.retained_sent[next(iter(self.retained_sent))]
        return payload


class Service:
    """Base class of every service. Subclasses set ``name`` and add ``@handles`` methods."""

    name: ClassVar[str]
    # A persistent session keeps QoS 1 messages while the worker is down. A service whose
    # state is rebuilt from retained topics (the gateway) wants no backlog from before it
    # started: its session is cleared at start (and at a clean stop), and persistent while
    # it runs, so that it survives the loss of a broker node (a clean session's queue on
    # RabbitMQ 3.10 lives on one node: issue 22).
    fresh_session: ClassVar[bool] = False
    # Each message's handler runs in its own asyncio Task. A service whose handlers rarely
    # await (the gateway forwarding bytes, SQLite writes) may start them eagerly on the
    # message's own callback instead: no Task and no loop turn per message, but no
    # ``asyncio.current_task()`` before the first suspension, so ``asyncio.timeout()`` and
    # aiohttp's client timeouts fail there. Safe by default, fast by choice.
    eager_handlers: ClassVar[bool] = False
    # A durable outbox (``dovecote.outbox``) for ``bus.publish(..., durable=True)``: for what a
    # service promised outside the bus before the broker acknowledged it (the gateway's 201).
    outbox: ClassVar[bool] = False
    # Sends the operators' commands (publisher "operator": dead letters, traces) for the
    # people it trusts as operators: the gateway's operations page. Its broker login may.
    operator: ClassVar[bool] = False
    # A durable record of what it did, keyed on the causes (``dovecote.keeping``):
    # ``self.record``, opened by the worker before ``setup()`` and closed after the last
    # handler. For effects that must happen once across restarts and redeliveries.
    keeps_record: ClassVar[bool] = False

    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.log = logging.getLogger(f"dovecote.{self.name}")
        self._record: Record | None = None
        if self.keeps_record:  # SQLAlchemy loads only for a service that keeps a record
            from dovecote.keeping import Record

            self._record = Record.for_service(settings, self.name)

    @property
    def record(self) -> Record:
        """The service's record (``keeps_record = True``)."""
        if self._record is None:
            raise AttributeError(f"{self.name} keeps no record: set `keeps_record = True` on it")
        return self._record

    async def setup(self) -> None:
        """Open resources (stores, HTTP sessions, servers) before the first message."""

    async def teardown(self) -> None:
        """Release resources; may still publish (the connection closes after this)."""

    def republish_state(self) -> None:
        """Publish the retained state topics this service owns, as they are now.

        Called when someone asks (``services/query``): a subscriber whose broker node holds
        no or an old retained copy (a RabbitMQ cluster keeps retained messages per node).
        Only the worker that holds the latest state should answer; by default, nothing.
        """

    async def retained_arrived(self) -> None:
        """Called once, after the first connection: the broker has delivered the retained
        messages of this worker's subscriptions, and their handlers have run. A service that
        restores itself from its own retained state knows here that there is no more to come
        (none at all, on a fresh federation), instead of waiting a guessed while."""

    def measured(self, measurements: act.WorkerMeasurements) -> None:
        """This worker's own metrics report, as it is published (``dovecote.metrics``): for
        a service that shows reports (the gateway), which hears its own only through the bus."""

    def readings(self) -> Mapping[str, float]:
        """The service's own measurements for its metrics report (``dovecote.metrics``):
        name -> value, a name ending in ``_total`` a count since the start."""
        return {}

    @classmethod
    def handled(cls) -> list[tuple[str, Topic | None, bool, str]]:
        """(filter relative to root, registry entry or None, shared, handler's name): what
        the handlers of this class listen to, known without an instance (tools, the fuzz)."""
        found: list[tuple[str, Topic | None, bool, str]] = []
        for attr in dir(cls):
            fn = getattr(cls, attr, None)
            for target, shared in getattr(fn, _MARK, ()):
                if isinstance(target, Topic):
                    found.append((target.relative_filter, target, shared, attr))
                else:
                    found.append((target, None, shared, attr))
        return found

    @classmethod
    def filters(cls, root: str) -> list[str]:
        """Every filter a worker of this service subscribes to: its handlers', and the
        runtime's own (the command inbox, the presence query)."""
        own = [inbox(root, cls.name), topics.PRESENCE_QUERY.address(root)]
        return own + [f"{root}/{rel}" for rel, *_ in cls.handled()]

    def bindings(self) -> list[tuple[str, Topic | None, bool, Handler]]:
        """(filter relative to root, registry entry or None, shared, bound handler)."""
        return [(f, e, s, getattr(self, attr)) for f, e, s, attr in self.handled()]


def inbox(root: str, service: str) -> str:
    """A service's command inbox: every command to it, its unknown verbs included."""
    return f"{root}/commands/{service}/#"
