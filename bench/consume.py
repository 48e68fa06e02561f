"""One worker's QoS 1 consume rate (validation + idempotency + ack), vs mosquitto_sub.

Two ways, both side by side in one run, on the same broker:

- live: ``mosquitto_pub -l -q 1`` streams N activities while the consumer runs
  (docs/performance.md's method); the rate is N over first-to-last arrival. A consumer
  faster than the publisher shows the publisher's rate, so this says "keeps up", not "how fast";
- backlog: N activities queued for an offline persistent session, drained from connect to
  the last message: each consumer's own ceiling.

"dovecote.mqtt alone" is the worker's connection (our packet reader on the event loop) with
auto-ack and nothing else: the cost of the bus itself; "paho alone" is paho-mqtt with its
own loop, the machine's yardstick. mqtt.js on Node.js is the seed's stack (``bench/peers/``,
``consume_peers.py``): the backlog goal is the worker at 1.0x it or better, live at 0.95x
``mosquitto_sub``. Every rate has its CPU microseconds a message beside it (in-process
consumers from first to last message; Node its own; ``mosquitto_sub`` its whole life, from
the kernel's count of a reaped child). The Dovecote worker runs twice, with its metrics on (the
default: ``dovecote.metrics`` counts every message) and off (``DOVECOTE_METRICS_INTERVAL=0``):
what measuring itself costs a worker, in the same run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from bench import consume_peers, faststream_peer
from bench.common import REPEATS, heading, median, private_broker
from bench.servers import PeersUnavailable, install_peers
from dovecote import Delivery, Service, handles, topics
from dovecote import activity as act
from dovecote.config import Settings, parse_mqtt_url
from dovecote.dispatch import Binding, Dispatcher
from dovecote.metrics import Meter, Unmetered
from dovecote.mqtt import Connection, Message
from dovecote.worker import Worker
from services.builder import topics as builder_topics

N = 20_000
PAIRS = 9  # metrics on/off drains compared (at least)
BENCH_TOPIC = topics.register(
    topics.Topic(
        "events/bench/build",
        "bench",
        1,
        False,
        builder_topics.BuildUpdated,
        "Bench traffic: a realistic build update.",
    )
)


class Run(NamedTuple):
    rate: float  # messages a second
    cpu: float | None  # CPU microseconds per message of an in-process consumer


Consumer = Callable[[str, str, list[bytes], bool], Awaitable[Run]]


def payloads(n: int) -> list[bytes]:
    actor = act.service("builder")
    out = []
    for i in range(n):
        build = {
            "type": "Build",
            "id": act.new_id(),
            "name": f"Build #{i}",
            "state": "running",
            "progress": i % 100,
            "startTime": act.now(),
            "worker": "builder.1",
        }
        out.append(act.encode(act.new("Update", actor, build, context=act.new_id())))
    return out


async def make_session(url: str, client_id: str, topic: str) -> None:
    """Create a persistent session subscribed to ``topic``, then leave it offline."""
    sub = Connection(parse_mqtt_url(url), client_id, on_message=lambda m: None, clean_session=False)
    sub.start()
    await sub.wait_connected(10)
    fut = sub.subscribe(topic, 1)
    assert fut is not None
    await fut
    await sub.stop()


async def mosquitto_pub(url: str, topic: str, data: list[bytes]) -> None:
    b = parse_mqtt_url(url)
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        f.write(b"\n".join(data) + b"\n")
        f.flush()
        with Path(f.name).open("rb") as lines:  # noqa: ASYNC230 - a file handle for a child
            proc = await asyncio.create_subprocess_exec(
                "mosquitto_pub",
                "-h",
                b.host,
                "-p",
                str(b.port),
                "-q",
                "1",
                "-l",
                "-t",
                topic,
                stdin=lines,
            )
            await asyncio.wait_for(proc.wait(), 300)


class Clock:
    """Counts a consumer's messages: wall time and this process's CPU time from the first
    to the last (CPU: what a consumer costs, whatever else the machine is doing)."""

    def __init__(self, target: int) -> None:
        self.target, self.count = target, 0
        self.first = self.last = 0.0
        self.cpu_first = self.cpu_last = 0.0
        self.finished = asyncio.Event()

    def tick(self) -> None:
        now = time.perf_counter()
        self.count += 1
        if self.count == 1:
            self.first, self.cpu_first = now, time.process_time()
        if self.count == self.target:
            self.last, self.cpu_last = now, time.process_time()
            self.finished.set()


class Counter(Service):
    name = "benchsvc"
    eager_handlers = True
    clock: ClassVar[Clock]

    @handles(BENCH_TOPIC)
    async def on_build(self, activity: builder_topics.BuildUpdated, _: Delivery) -> None:
        type(self).clock.tick()


async def run_consumer(
    start: Callable[[Clock], Awaitable[Callable[[], Awaitable[None]]]],
    url: str,
    topic: str,
    data: list[bytes],
    live: bool,
) -> Run:
    clock = Clock(len(data))
    began = time.perf_counter()
    stop = await start(clock)
    if live:
        await asyncio.sleep(0.3)  # subscribed
        await mosquitto_pub(url, topic, data)
    await asyncio.wait_for(clock.finished.wait(), 300)
    await stop()
    elapsed = clock.last - (clock.first if live else began)
    cpu = (clock.cpu_last - clock.cpu_first) / (len(data) - 1) * 1e6
    return Run((len(data) - (1 if live else 0)) / elapsed, cpu)


def rate(n: int, began_to_last: float, first_to_last: float, live: bool) -> float:
    """Live: from the first to the last message; backlog: from before the connect."""
    return (n - 1) / first_to_last if live else n / began_to_last


async def dovecote_worker(
    url: str, root: str, data: list[bytes], live: bool, metrics: bool = True
) -> Run:
    env = {"MQTT_URL": url, "DOVECOTE_ROOT": root, "LOG_LEVEL": "WARNING"}
    if not metrics:
        env["DOVECOTE_METRICS_INTERVAL"] = "0"
    settings = Settings.from_env(env)
    topic = BENCH_TOPIC.address(root)
    if not live:
        await make_session(url, f"{root}-benchsvc-1", topic)
        await preload(url, topic, data)

    async def start(clock: Clock) -> Callable[[], Awaitable[None]]:
        Counter.clock = clock
        worker = Worker(Counter, settings)
        await worker.start()
        return worker.shutdown

    return await run_consumer(start, url, topic, data, live)


async def connection_alone(url: str, root: str, data: list[bytes], live: bool) -> Run:
    topic = f"{root}/events/bench/build"
    client_id = f"bare-{root}"
    if not live:
        await make_session(url, client_id, topic)
        await preload(url, topic, data)

    async def start(clock: Clock) -> Callable[[], Awaitable[None]]:
        def count(_: Message) -> None:
            clock.tick()

        conn = Connection(
            parse_mqtt_url(url), client_id, on_message=count, clean_session=False, manual_ack=False
        )
        conn.subscribe(topic, 1)
        conn.start()
        return conn.stop

    return await run_consumer(start, url, topic, data, live)


async def faststream_sub(url: str, root: str, data: list[bytes], live: bool) -> Run:
    topic = f"{root}/events/bench/build"
    client_id = f"fs-{root}"
    if not live:
        await make_session(url, client_id, topic)
        await preload(url, topic, data)

    async def start(clock: Clock) -> Callable[[], Awaitable[None]]:
        return await faststream_peer.consume(url, client_id, topic, clock.tick)

    return await run_consumer(start, url, topic, data, live)


async def c_client(url: str, root: str, data: list[bytes], live: bool) -> Run:
    b = parse_mqtt_url(url)
    topic = f"{root}/events/bench/build"
    client_id = f"c-{root}"
    await make_session(url, client_id, topic)
    if not live:
        await preload(url, topic, data)
    began = time.perf_counter()
    sub = await asyncio.create_subprocess_exec(
        *consume_peers.TIMED,
        "mosquitto_sub",
        "-h",
        b.host,
        "-p",
        str(b.port),
        "-c",
        "-i",
        client_id,
        "-q",
        "1",
        "-t",
        topic,
        "-C",
        str(len(data)),
        "-F",
        "%U",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=1 << 20,
    )
    if live:
        await asyncio.sleep(0.3)
        await mosquitto_pub(url, topic, data)
    out, err = await asyncio.wait_for(sub.communicate(), 300)
    ended = time.perf_counter()
    cpu = consume_peers.timed_cpu(err) / len(data) * 1e6  # its whole life, connect included
    stamps = [float(x) for x in out.split()]
    assert len(stamps) == len(data), f"mosquitto_sub got {len(stamps)} of {len(data)}"
    return Run(rate(len(data), ended - began, stamps[-1] - stamps[0], live), cpu)


async def mqtt_js(url: str, root: str, data: list[bytes], live: bool) -> Run:
    topic = f"{root}/events/bench/build"
    client_id = f"js-{root}"
    await make_session(url, client_id, topic)
    if not live:
        await preload(url, topic, data)
    stream = functools.partial(mosquitto_pub, url, topic, data) if live else None
    began_to_last, first_to_last, cpu = await consume_peers.mqtt_js(
        url, client_id, topic, len(data), stream
    )
    return Run(rate(len(data), began_to_last, first_to_last, live), cpu)


async def paho_alone(url: str, root: str, data: list[bytes], live: bool) -> Run:
    topic = f"{root}/events/bench/build"
    client_id = f"paho-{root}"
    await make_session(url, client_id, topic)
    if not live:
        await preload(url, topic, data)
    consumer = consume_peers.PahoAlone(url, client_id, topic, len(data))
    running = asyncio.ensure_future(asyncio.to_thread(consumer.run))
    if live:
        await asyncio.to_thread(consumer.subscribed.wait, 30)
        await asyncio.sleep(0.3)
        await mosquitto_pub(url, topic, data)
    await asyncio.wait_for(running, 300)
    first_to_last = consumer.last - consumer.first
    elapsed = consumer.last - consumer.began
    return Run(rate(len(data), elapsed, first_to_last, live), consumer.cpu_us)


async def preload(url: str, topic: str, data: list[bytes]) -> None:
    await mosquitto_pub(url, topic, data)


C_CLIENT = "mosquitto_sub (C)"
MQTT_JS = "mqtt.js 5 on Node (seed's stack)"
PAHO = "paho alone (its loop, auto-ack)"
METERED = "dovecote worker (validate+dedupe+ack)"  # metrics on, the default
UNMETERED = "dovecote worker, metrics off"
CONSUMERS: dict[str, Consumer] = {
    C_CLIENT: c_client,
    MQTT_JS: mqtt_js,
    PAHO: paho_alone,
    "dovecote.mqtt alone (auto-ack)": connection_alone,
    METERED: dovecote_worker,
    UNMETERED: functools.partial(dovecote_worker, metrics=False),
    "FastStream 0.7 (pydantic+ack)": faststream_sub,
}
GOALS = {"live": (C_CLIENT, 0.95), "backlog": (MQTT_JS, 1.0)}  # the worker vs whom, how fast


def dispatch_cpu(data: list[bytes], metered: bool) -> float:
    """CPU microseconds per message of the message path alone (route, decode, dedupe, an
    eager handler that returns at once, ack), no broker: where the meter's cost shows
    undiluted by the socket and paho."""

    async def handler(activity: Any, delivery: Delivery) -> None:
        return None

    settings = Settings.from_env({"DOVECOTE_ROOT": "bench"})
    topic = BENCH_TOPIC.address("bench")
    dispatcher = Dispatcher(
        "benchsvc",
        settings,
        [Binding(topic, BENCH_TOPIC, handler, True)],
        ack=lambda mid, qos: None,
        park=lambda *_: None,
        on_query=lambda _: None,
        eager=True,
        log=logging.getLogger("bench"),
        meter=Meter() if metered else Unmetered(),
    )
    messages = [Message(topic, payload, 1, False, n % 65535 + 1) for n, payload in enumerate(data)]
    began = time.process_time()
    for msg in messages:
        dispatcher.on_message(msg)
    return (time.process_time() - began) / len(messages) * 1e6


async def measure() -> dict[str, Any]:
    data = payloads(N)
    path: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(max(REPEATS, 5)):
        for mode in ("on", "off"):
            path[mode].append(dispatch_cpu(data, mode == "on"))
    consumers, notes = dict(CONSUMERS), []
    try:
        install_peers()
    except PeersUnavailable as exc:
        del consumers[MQTT_JS]
        notes.append(f"mqtt.js LEFT OUT: {exc}")
    results: dict[str, dict[str, list[float]]] = {"live": {}, "backlog": {}}
    cpu: dict[str, dict[str, list[float]]] = {"live": {}, "backlog": {}}  # us a message
    pairs: dict[str, list[float]] = {"on": [], "off": []}
    with private_broker() as broker:
        # Metrics on and off, back to back, in turns (on first, then off first): what the
        # meter costs, with the machine's drift shared between the two.
        for n in range(max(REPEATS, PAIRS)):
            for metered in (True, False) if n % 2 == 0 else (False, True):
                root = f"b{uuid.uuid4().hex[:8]}"
                run = await dovecote_worker(broker.url, root, data, False, metrics=metered)
                assert run.cpu is not None
                pairs["on" if metered else "off"].append(run.cpu)
        for _ in range(REPEATS):
            for mode in ("live", "backlog"):
                for name, consumer in consumers.items():
                    root = f"b{uuid.uuid4().hex[:8]}"
                    run = await consumer(broker.url, root, data, mode == "live")
                    results[mode].setdefault(name, []).append(run.rate)
                    if run.cpu is not None:
                        cpu[mode].setdefault(name, []).append(run.cpu)
    return {
        "size": sum(map(len, data)) // len(data),
        "results": results,
        "path": path,
        "cpu": cpu,
        "pairs": pairs,
        "notes": notes,
    }


def report(r: dict[str, Any]) -> None:
    heading(f"Consume, QoS 1: {N:,} activities of ~{r['size']} bytes, median of {REPEATS}")
    for note in r["notes"]:
        print(f"  {note}")
    for mode, title in (
        ("live", "live stream from mosquitto_pub (docs/performance.md's method)"),
        ("backlog", "draining a backlog (each consumer's ceiling)"),
    ):
        rates, cpu = r["results"][mode], r["cpu"][mode]
        base = median(rates[C_CLIENT])
        node = median(rates[MQTT_JS]) if MQTT_JS in rates else None
        print(f"  {title}")
        print(f"    {'':40} {'msg/s':>9}  {'vs C':>5}  {'vs mqtt.js':>10}  {'CPU us/msg':>10}")
        for name, values in rates.items():
            m = median(values)
            versus = f"{m / node:9.2f}x" if node else f"{'':10}"
            used = f"{median(cpu[name]):10.2f}" if name in cpu else f"{'':10}"
            print(f"    {name:40} {m:>9,.0f}  {m / base:4.2f}x  {versus}  {used}")
        reference, target = GOALS[mode]
        if reference in rates:
            ratio = median(rates[METERED]) / median(rates[reference])
            print(f"    the worker vs {reference}: {ratio:.2f}x (goal >= {target:.2f}x)")
        on, off = median(rates[METERED]), median(rates[UNMETERED])
        print(f"    metrics on vs off: {(off - on) / off * 100:+.1f} % slower on (wall clock)")
    on, off = median(r["path"]["on"]), median(r["path"]["off"])
    print(
        f"  the message path alone (no broker), CPU per message: metrics on {on:.2f} us, "
        f"off {off:.2f} us: {(on - off) / off * 100:+.1f} %"
    )
    if PAHO in r["cpu"]["backlog"]:
        print(
            f"  this machine's yardstick: paho alone drains at "
            f"{median(r['cpu']['backlog'][PAHO]):.2f} us of CPU a message (scale by it)"
        )
    on_runs, off_runs = r["pairs"]["on"], r["pairs"]["off"]
    on, off = median(on_runs), median(off_runs)
    each = [(a - b) / b * 100 for a, b in zip(on_runs, off_runs, strict=True)]
    print(
        f"  metrics on vs off, one worker draining the backlog, {len(each)} pairs in turns: "
        f"{on:.2f} vs {off:.2f} us of CPU a message, {(on - off) / off * 100:+.1f} % "
        f"(goal <= 5 %); pair by pair: median {median(each):+.1f} %, "
        + ", ".join(f"{x:+.1f}" for x in each)
    )
