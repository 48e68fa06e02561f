"""Which handlers of a service want a message, and the payload decoded for each of them.

A handler is bound to a registry topic (its payload type decodes the message) or to a filter
(``"events/#"``: the topic's registry entry decodes it if it has one, else any activity).
The routes of each topic are worked out once and kept (a bounded cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dovecote import activity as act
from dovecote import topics
from dovecote.mqtt import Message
from dovecote.service import Delivery, Handler
from dovecote.topics import Topic

GENERIC = act.Codec(act.Activity)  # for topics a handler takes by filter, not by entry
ROUTES_KEPT = 10_000  # topics whose routes are remembered; all forgotten past it

Call = tuple[Handler, Any, Delivery]  # one handler, with the activity decoded for it


@dataclass(slots=True)
class Binding:
    """One handler of the service and the absolute filter it was registered for."""

    filter: str
    entry: Topic | None
    handler: Handler
    shared: bool


Route = tuple[Binding, dict[str, str]]  # a binding, and the topic's parameters


class Routes:
    """The routes of one service's bindings under one root."""

    def __init__(self, root: str, bindings: list[Binding]) -> None:
        self.root = root
        self.bindings = bindings
        self._routes: dict[str, list[Route]] = {}

    def of(self, topic: str) -> list[Route]:
        """The handlers that want ``topic``; none: no handler does."""
        routes = self._routes.get(topic)
        if routes is None:
            routes = []
            for b in self.bindings:
                if b.entry is not None:
                    params = b.entry.match(self.root, topic)
                    if params is not None:
                        routes.append((b, params))
                elif topics.matches(b.filter, topic):
                    found = topics.lookup(self.root, topic)
                    routes.append((b, found[1] if found else {}))
            if len(self._routes) > ROUTES_KEPT:
                self._routes.clear()
            self._routes[topic] = routes
        return routes

    def calls(self, msg: Message, routes: list[Route]) -> list[Call]:
        """The payload decoded for each handler (once per codec), each before any runs.
        ``InvalidActivity`` if one of them cannot take it."""
        if len(routes) == 1:  # nearly always: no bookkeeping of codecs
            binding, params = routes[0]
            entry = binding.entry or self._entry_for(msg.topic)
            activity = (entry.codec if entry else GENERIC).decode(msg.payload)
            delivery = Delivery(msg.topic, params, msg.payload, msg.retain, entry)
            return [(binding.handler, activity, delivery)]
        calls: list[Call] = []
        decoded: dict[int, Any] = {}
        for binding, params in routes:
            entry = binding.entry or self._entry_for(msg.topic)
            codec = entry.codec if entry else GENERIC
            activity = decoded.get(id(codec))
            if activity is None:
                activity = decoded[id(codec)] = codec.decode(msg.payload)
            delivery = Delivery(msg.topic, params, msg.payload, msg.retain, entry)
            calls.append((binding.handler, activity, delivery))
        return calls

    def _entry_for(self, topic: str) -> Topic | None:
        found = topics.lookup(self.root, topic)
        return found[0] if found else None
