"""The state query (``services/query``), asked and answered.

A broker that gives no retained message to a wildcard is RabbitMQ, whose retained store is
also per node: in a cluster, the node a worker is on may hold no or an old copy of what was
published via another. A worker that needs such state asks on connecting; every worker
answers: it re-announces itself and has its service republish the state topics it owns.
Both coalesced (``dovecote.throttle``): a reconnecting worker cannot make the federation
republish its state at every reconnect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dovecote import activity as act
from dovecote import letters, topics
from dovecote.capabilities import Capabilities
from dovecote.errors import InvalidActivity
from dovecote.mqtt import Message
from dovecote.presence import Presence
from dovecote.service import Bus, Service
from dovecote.throttle import Throttle
from dovecote.transport import Transport

# A worker asks for the federation's state at most this often, however often it reconnects,
# and answers others' questions at most this often, however many ask (seconds).
ASK_EVERY = 2.0
ANSWER_EVERY = 1.0


def needs_asking(root: str, subscribed: list[str], caps: Capabilities) -> bool:
    """Whether a worker subscribed to these filters must ask for the state: on a broker
    that gives no retained message to a wildcard, a state topic, or a wildcard of a retained
    topic with parameters (presence, a card's state/x/{user}), which misses them there."""
    if caps.retained_to_wildcards:
        return False
    samples = [
        t.address(root, **dict.fromkeys(t.params, "x"))
        for t in topics.all_topics()
        if t.retain and t.params
    ]
    state = [t.address(root) for t in topics.all_topics() if t.kind == "state" and not t.params]
    return any(
        f in state or any(f != sample and topics.matches(f, sample) for sample in samples)
        for f in subscribed
    )


class StateQuery:
    """One worker's side of the state query. ``reject`` parks a message (the dispatcher's)."""

    def __init__(
        self,
        conn: Transport,
        bus: Bus,
        service: Service,
        presence: Presence,
        reject: Callable[[Message, str], None],
        log: logging.Logger,
    ) -> None:
        self.conn = conn
        self.bus = bus
        self.service = service
        self.presence = presence
        self._reject = reject
        self.log = log
        self.topic = topics.PRESENCE_QUERY.address(bus.root)
        self.wanted = False  # this worker asks on connecting (``needs_asking``)
        self.refused = 0  # garbage on services/query another service keeps
        self.asking = Throttle(ASK_EVERY, self._ask)
        self.answering = Throttle(ANSWER_EVERY, self._announce)

    def connected(self) -> None:
        if self.wanted:
            self.asking.request()  # at once, unless it asked less than ASK_EVERY ago

    def cancel(self) -> None:
        self.asking.cancel()
        self.answering.cancel()

    def _ask(self) -> bool:
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

    def answer(self, msg: Message) -> None:
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
            if self.bus.service == letters.KEEPER:
                self._reject(msg, str(exc))
                return
            self.refused += 1
            self.log.debug("refused a presence query (%s parks it): %s", letters.KEEPER, exc)
            self.conn.ack(msg.mid, msg.qos)
            return
        self.answering.request()
        self.conn.ack(msg.mid, msg.qos)

    def _announce(self) -> None:
        self.conn.publish(self.presence.topic, self.presence.join(), 1, True)
        try:
            self.service.republish_state()
        except Exception:  # a bug there must not stop the worker answering what it can
            self.log.exception("republishing state for %s failed", self.topic)
        for topic, (payload, qos) in list(self.bus.retained_sent.items()):
            self.conn.publish(topic, payload, qos, True)  # the same ids: repeats, not news
