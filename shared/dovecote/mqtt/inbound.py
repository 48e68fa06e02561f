"""The broker's bytes cut into MQTT 3.1.1 packets: PUBLISH read here, the rest left to paho.

paho reads a packet with three or four ``recv`` calls, a dict and a bytearray of its own,
and builds an ``MQTTMessage`` that is then copied into ours: two-thirds of a worker's time
draining a backlog (issue 27, docs/performance.md). Here what one read returned is cut into
packets in place. A PUBLISH of QoS 0 or 1 becomes a ``Message`` at once; every other packet
(CONNACK, SUBACK, UNSUBACK, PUBACK, PINGRESP, a QoS 2 PUBLISH and its PUBREL) goes to paho
whole and in stream order (``other``), so paho keeps the connection's state as before.

The MQTT 3.1.1 rules this touches: the remaining length is 1-4 bytes of 7 bits (up to
268,435,455; a fifth byte is a protocol violation); a packet may end in a later read; a
PUBLISH of QoS 1 carries a non-zero packet id after its topic, acknowledged with that id
(``PUBACK``); a DUP flag changes nothing for a receiver (the dedupe is the dispatcher's);
QoS 3 is malformed. On a violation the connection is closed (``violation``): no byte after
it can be trusted to start a packet.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

from dovecote.mqtt.messages import Message

log = logging.getLogger("dovecote.mqtt")

MAX_REMAINING = 268_435_455  # 4 bytes of 7 bits: MQTT 3.1.1 section 2.2.3
TOPICS_KEPT = 1024  # decoded topic names kept (a worker sees few distinct topics)
PUBACK = struct.Struct("!BBH").pack  # type 4, remaining length 2, the packet id


def puback(mid: int) -> bytes:
    return PUBACK(0x40, 2, mid)


class Inbound:
    """Packets out of one connection's byte stream, in order: ``feed`` each read.

    ``deliver(message)``: a PUBLISH of QoS 0 or 1. ``undecodable(qos, mid)``: one whose
    topic is not UTF-8 (to acknowledge and drop). ``other(packet)``: any other whole packet;
    False when the connection has closed meanwhile. ``violation(reason)``: close it.
    """

    __slots__ = (
        "_deliver",
        "_have",
        "_need",
        "_other",
        "_parts",
        "_topics",
        "_undecodable",
        "_violation",
        "open",
    )

    def __init__(
        self,
        deliver: Callable[[Message], None],
        undecodable: Callable[[int, int], None],
        other: Callable[[bytes], bool],
        violation: Callable[[str], None],
    ) -> None:
        self._deliver = deliver
        self._undecodable = undecodable
        self._other = other
        self._violation = violation
        self._parts: list[bytes] = []  # an unfinished packet's bytes so far, in reads
        self._have = 0  # their length
        self._need = 0  # bytes that packet needs in all, where its header said (else 0)
        self._topics: dict[bytes, str] = {}
        self.open = True  # False once the socket is gone: nothing more is delivered

    def feed(self, data: bytes) -> None:
        """Hand on every whole packet in what has arrived; keep the tail of an unfinished
        one. A big packet's reads are joined once, when it is whole, not read by read."""
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._parts)
            self._parts = []
            self._need = 0
        end = len(data)
        pos = 0
        deliver, topics = self._deliver, self._topics
        while pos < end and self.open:
            first = data[pos]
            # The remaining length: 7 bits a byte, least significant first, at most four.
            i = pos + 1
            length = 0
            shift = 0
            while True:
                if i >= end:
                    self._keep(data[pos:], 0)  # the header itself is unfinished
                    return
                byte = data[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if shift == 28:
                    self._fail("a remaining length of more than four bytes")
                    return
            stop = i + length
            if stop > end:
                self._keep(data[pos:], stop - pos)
                return
            if first & 0xF0 == 0x30 and first & 0x06 != 0x04:  # PUBLISH, QoS 0 or 1 (or 3)
                qos = (first >> 1) & 3
                if qos == 3:
                    self._fail("a PUBLISH of QoS 3")
                    return
                topic_end = i + 2 + (data[i] << 8 | data[i + 1]) if length >= 2 else stop + 1
                if topic_end + 2 * qos > stop:
                    self._fail("a PUBLISH shorter than its topic and packet id")
                    return
                name = data[i + 2 : topic_end]
                mid = 0
                if qos:
                    mid = data[topic_end] << 8 | data[topic_end + 1]
                    if not mid:
                        self._fail("a QoS 1 PUBLISH with packet id 0")
                        return
                topic = topics.get(name)
                if topic is None:
                    try:
                        topic = name.decode()
                    except UnicodeDecodeError:
                        self._undecodable(qos, mid)
                        pos = stop
                        continue
                    if len(topics) >= TOPICS_KEPT:
                        topics.clear()
                    topics[name] = topic
                payload = data[topic_end + 2 * qos : stop]
                try:
                    deliver(Message(topic, payload, qos, bool(first & 1), mid))
                except Exception:  # as paho did: a bug in a callback never stops the reading
                    log.exception("on_message failed on %s", topic)
            elif not self._other(data[pos:stop]):
                return
            pos = stop

    def _keep(self, tail: bytes, need: int) -> None:
        self._parts = [tail]
        self._have = len(tail)
        self._need = need

    def _fail(self, reason: str) -> None:
        self.open = False
        self._parts = []
        self._violation(reason)
