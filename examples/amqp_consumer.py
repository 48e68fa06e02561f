"""An AMQP 0-9-1 participant: Dovecote's events from RabbitMQ, without MQTT.

The seed promised that "an AMQP v0.91 client can participate in the system without
problems". On RabbitMQ, every MQTT publish of the services lands on the ``amq.topic``
exchange with ``/`` turned into ``.``: ``dovecote/events/build/started`` is routing key
``dovecote.events.build.started``. So an AMQP program binds a queue of its own with an
AMQP pattern (``*`` one word, ``#`` any) and reads the very same AS2 JSON:

    pip install -e '.[amqp]'
    python -m examples.amqp_consumer --url amqp://guest:guest@localhost:5672/%2F

A durable, named queue (``--queue``) keeps events while this program is away, as an MQTT
persistent session does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson
import pika

from dovecote import activity as act

Handler = Callable[[str, Any], None]
_GENERIC = act.Codec(act.Activity)


def binding_key(root: str, mqtt_filter: str) -> str:
    """An MQTT filter below the root as an AMQP pattern: ``events/+/x`` -> ``r.events.*.x``."""
    levels = f"{root}/{mqtt_filter}".split("/")
    return ".".join("*" if lv == "+" else lv for lv in levels)


def consume(
    url: str,
    root: str,
    mqtt_filter: str,
    on_event: Handler,
    queue: str = "",
    count: int = 0,
    ready: Callable[[], None] = lambda: None,
) -> int:
    """Bind, then hand each valid activity to ``on_event(topic, activity)``; ack after it.

    Stops after ``count`` activities (0: never). A payload that is not an AS2 activity is
    rejected without requeueing (a dead-letter exchange on the queue would keep it).
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=50)
    declared = channel.queue_declare(queue, durable=bool(queue), exclusive=not queue)
    name = declared.method.queue
    channel.queue_bind(name, "amq.topic", routing_key=binding_key(root, mqtt_filter))
    ready()
    seen = 0
    try:
        for method, _props, body in channel.consume(name):
            if method is None or body is None:  # only with an inactivity timeout
                continue
            topic = method.routing_key.replace(".", "/")
            try:
                activity = _GENERIC.decode(body)
            except act.InvalidActivity as exc:
                print(f"rejected a message on {topic}: {exc}", file=sys.stderr)
                channel.basic_reject(method.delivery_tag, requeue=False)
                continue
            on_event(topic, activity)
            channel.basic_ack(method.delivery_tag)
            seen += 1
            if count and seen >= count:
                break
    finally:
        if connection.is_open:
            connection.close()
    return seen


def show(topic: str, activity: Any) -> None:
    line = {"topic": topic, "id": activity.id, "type": activity.type, "actor": activity.actor.id}
    print(orjson.dumps(line).decode(), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2F")
    )
    parser.add_argument("--root", default=os.environ.get("DOVECOTE_ROOT", "dovecote"))
    parser.add_argument("--filter", default="events/#", help="MQTT filter below the root")
    parser.add_argument("--queue", default="", help="a durable queue name (default: temporary)")
    parser.add_argument("--count", type=int, default=0, help="stop after N events")
    args = parser.parse_args(argv)

    def ready() -> None:
        print(f"listening on amq.topic for {binding_key(args.root, args.filter)}", flush=True)

    consume(args.url, args.root, args.filter, show, args.queue, args.count, ready)
    return 0


if __name__ == "__main__":
    sys.exit(main())
