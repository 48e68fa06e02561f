"""Reading PUBLISH packets and writing PUBACKs ourselves (``dovecote.mqtt.inbound``, issue 27).

The MQTT 3.1.1 rules the reader touches, first on bytes made here (a packet split at every
offset, the longest remaining length, malformed packets), then on both brokers: packet ids
acknowledged so that a resumed session has nothing left, an unacknowledged message sent
again (DUP) in order, QoS 1 order with payloads split across reads, QoS 0 and 2 as they
arrive. ~2 s a broker.
"""

from __future__ import annotations

import asyncio
import struct
import uuid

import pytest

from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Connection, Message
from dovecote.mqtt.inbound import MAX_REMAINING, Inbound, puback
from dovecote.tools.broker import PrivateMosquitto
from dovecote_testing.plugin import TestBroker, wait_until


def remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(
    topic: bytes, payload: bytes, qos: int = 1, mid: int = 1, retain: bool = False
) -> bytes:
    packet_id = struct.pack("!H", mid) if qos else b""
    body = struct.pack("!H", len(topic)) + topic + packet_id + payload
    return bytes([0x30 | qos << 1 | retain]) + remaining(len(body)) + body


class Reader:
    """An ``Inbound`` and what it handed on, in order."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.got: list[object] = []
        self.violations: list[str] = []

        def deliver(m: Message) -> None:
            if m.topic == fail_on:
                raise RuntimeError("a bug in a handler")
            self.got.append(m)

        def other(packet: bytes) -> bool:
            self.got.append(packet)
            return True

        self.inbound = Inbound(
            deliver,
            lambda qos, mid: self.got.append(("undecodable", qos, mid)),
            other,
            self.violations.append,
        )

    def feed(self, *reads: bytes) -> Reader:
        for data in reads:
            self.inbound.feed(data)
        return self


STREAM = [
    b"\x20\x02\x01\x00",  # CONNACK, session present: paho's
    publish(b"a/b", b'{"x": 1}', qos=1, mid=7),
    publish(b"a/c", b"", qos=0, retain=True),
    b"\x90\x03\x00\x01\x01",  # SUBACK
    publish("é/ü".encode(), b"x" * 300, qos=1, mid=65535),  # two-byte remaining length
    publish(b"q/2", b"two", qos=2, mid=9),  # QoS 2: paho's
    b"\xd0\x00",  # PINGRESP
    bytes([0x3A]) + publish(b"a/b", b"dup")[1:],  # QoS 1 with DUP set
]
WHOLE = b"".join(STREAM)
EXPECTED = [
    STREAM[0],
    Message("a/b", b'{"x": 1}', 1, False, 7),
    Message("a/c", b"", 0, True, 0),
    STREAM[3],
    Message("é/ü", b"x" * 300, 1, False, 65535),
    STREAM[5],
    STREAM[6],
    Message("a/b", b"dup", 1, False, 1),  # DUP set: delivered as any other (dedupe decides)
]


def test_a_stream_read_whole_byte_by_byte_and_split_at_every_offset() -> None:
    assert Reader().feed(WHOLE).got == EXPECTED
    assert Reader().feed(*(WHOLE[i : i + 1] for i in range(len(WHOLE)))).got == EXPECTED
    for cut in range(1, len(WHOLE)):
        r = Reader().feed(WHOLE[:cut], WHOLE[cut:])
        assert r.got == EXPECTED, cut
        assert not r.violations


def test_a_big_packet_over_many_reads_and_the_longest_remaining_length() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    packet = publish(b"big", payload, mid=3) + publish(b"after", b"1", mid=4)
    reads = [packet[i : i + 65536] for i in range(0, len(packet), 65536)]
    r = Reader().feed(*reads)
    assert r.got == [Message("big", payload, 1, False, 3), Message("after", b"1", 1, False, 4)]
    # 268,435,455 in four bytes is allowed: the reader waits for the rest, it does not refuse.
    longest = b"\x30" + remaining(MAX_REMAINING)
    assert longest[1:] == b"\xff\xff\xff\x7f"
    r = Reader().feed(longest, b"\x00\x01")
    assert (r.got, r.violations, r.inbound.open) == ([], [], True)


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "more than four bytes"),
        (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
        (b"\x32\x04\x00\x01a\x00", "shorter than its topic and packet id"),
        (b"\x30\x01\x00", "shorter than its topic"),
        (b"\x32\x05\x00\x01a\x00\x00", "packet id 0"),
    ],
)
def test_a_malformed_packet_closes_the_connection(packet: bytes, why: str) -> None:
    r = Reader().feed(packet + publish(b"next", b"never"))
    assert r.got == []
    assert len(r.violations) == 1 and why in r.violations[0]
    assert not r.inbound.open


def test_a_topic_not_utf8_and_a_failing_handler_do_not_stop_the_reading() -> None:
    r = Reader(fail_on="boom").feed(
        publish(b"\xff\xfe", b"1", mid=5) + publish(b"boom", b"2", mid=6) + publish(b"ok", b"3")
    )
    assert r.got == [("undecodable", 1, 5), Message("ok", b"3", 1, False, 1)]


def test_puback_bytes() -> None:
    assert puback(1) == b"\x40\x02\x00\x01"
    assert puback(65535) == b"\x40\x02\xff\xff"


# --- on both brokers ------------------------------------------------------------------


class Reading:
    """A persistent session's connection, acknowledging each message as it comes, or only
    the first ``acking`` of them."""

    def __init__(
        self, broker: TestBroker, client_id: str, acking: int = 1 << 30, url: str = ""
    ) -> None:
        self.got: list[Message] = []
        self.acking = acking
        self.conn = Connection(
            parse_mqtt_url(url or broker.url),
            client_id,
            on_message=self.on_message,
            clean_session=False,
        )

    def on_message(self, m: Message) -> None:
        self.got.append(m)
        if len(self.got) <= self.acking:
            self.conn.ack(m.mid, m.qos)

    async def start(self, topic: str, qos: int) -> Reading:
        self.conn.subscribe(topic, qos)
        self.conn.start()
        await asyncio.wait_for(self.conn.ready.wait(), 20)
        return self


async def publisher(broker: TestBroker) -> Connection:
    pub = Connection(
        parse_mqtt_url(broker.url),
        f"pub-{uuid.uuid4().hex[:8]}",
        on_message=lambda _: None,
        clean_session=True,
    )
    pub.start()
    await pub.wait_connected(20)
    return pub


async def test_qos1_in_order_acknowledged_by_packet_id_and_resent_until_acknowledged(
    broker: TestBroker, root: str
) -> None:
    topic, client_id = f"{root}/in", f"{root}-reader"
    # Sizes from 1 byte to 300 KB, so that packets straddle reads and one spans several.
    sizes = [1, 10, 500, 70_000, 5, 300_000, 2, *range(100, 400)]
    sent = [f"{n:06d}".encode() + b"x" * size for n, size in enumerate(sizes)]
    half = len(sent) // 2
    first = await Reading(broker, client_id, acking=half).start(topic, 1)
    pub = await publisher(broker)
    for payload in sent:
        pub.publish(topic, payload, 1)
    assert await pub.flush(20)
    # (A broker may hold the rest back once its in-flight window is unacknowledged.)
    await wait_until(lambda: len(first.got) > half, 20, "the first half and more")
    await asyncio.sleep(0.5)  # the PUBACKs of the first half are on their way
    assert [m.payload for m in first.got] == sent[: len(first.got)]  # in order, whole
    assert {m.qos for m in first.got} == {1} and all(m.mid for m in first.got)
    first.conn.drop()  # lost as a crash would lose it

    second = await Reading(broker, client_id).start(topic, 1)
    await wait_until(lambda: len(second.got) >= len(sent) - half, 20, "the unacknowledged")
    await asyncio.sleep(0.3)
    assert [m.payload for m in second.got] == sent[half:]  # none acknowledged came back
    await second.conn.stop()

    third = await Reading(broker, client_id).start(topic, 1)
    pub.publish(topic, b"last", 1)
    await wait_until(lambda: bool(third.got), 20, "a new message")
    await asyncio.sleep(0.3)
    assert [m.payload for m in third.got] == [b"last"]  # the session owed nothing else
    await third.conn.stop()
    await pub.stop()


async def test_qos0_and_qos2_arrive_as_the_broker_grants_them(
    broker: TestBroker, root: str
) -> None:
    topic = f"{root}/mixed"
    reading = await Reading(broker, f"{root}-mixed").start(topic, 2)
    got = reading.got
    pub = await publisher(broker)
    for qos in (0, 1, 2, 0, 2, 1):
        pub.publish(topic, f"q{qos}".encode(), qos)
    await wait_until(lambda: len(got) == 6, 20, "six messages")
    # RabbitMQ has no QoS 2: it grants 1 and delivers QoS 2 publishes at 1.
    top = 2 if broker.kind == "mosquitto" else 1
    assert sorted((m.payload, m.qos) for m in got) == sorted(
        (f"q{q}".encode(), min(q, top)) for q in (0, 1, 2, 0, 2, 1)
    )
    await reading.conn.stop()
    await pub.stop()


@pytest.mark.brokers("mosquitto")  # the private RabbitMQ has no websocket listener
async def test_over_websockets_as_over_tcp(broker: TestBroker, root: str) -> None:
    """paho's websocket unwraps the frames; the reader cuts what it unwrapped the same way."""
    assert isinstance(broker, PrivateMosquitto)
    topic = f"{root}/ws"
    ws = f"ws://{broker.host}:{broker.ws_port}"
    reading = await Reading(broker, f"{root}-ws", url=ws).start(topic, 1)
    pub = await publisher(broker)
    sent = [f"{n:04d}".encode() + b"w" * size for n, size in enumerate([3, 200_000, *range(200)])]
    for payload in sent:
        pub.publish(topic, payload, 1)
    await wait_until(lambda: len(reading.got) == len(sent), 20, "every message over ws")
    assert [m.payload for m in reading.got] == sent
    await reading.conn.stop()
    again = await Reading(broker, f"{root}-ws", url=ws).start(topic, 1)
    await asyncio.sleep(0.3)
    assert again.got == []  # every PUBACK went back through the websocket
    await again.conn.stop()
    await pub.stop()
