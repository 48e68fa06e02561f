"""Consumers outside Dovecote for ``bench.consume``, each returning rates and CPU a message.

- ``mqtt_js``: the seed's stack, mqtt.js 5 on Node.js (``bench/peers/consume.js``):
  ``JSON.parse`` and a field check, acknowledged after the handler;
- ``paho_alone``: paho-mqtt by itself, its own ``loop_forever`` in a thread, auto-ack, no
  decoding: the yardstick of the machine (a reader elsewhere scales the figures by it);
- ``TIMED``: a command run under it reports its CPU time (``timed_cpu``): for ``mosquitto_sub``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.servers import PEERS
from dovecote.config import parse_mqtt_url

# bash runs the command, then its ``times`` prints the CPU of what it ran, last, on stderr.
TIMED = ("bash", "-c", '"$@"; times >&2', "timed")


def timed_cpu(stderr: bytes) -> float:
    """CPU seconds (user + system) of a command run under ``TIMED``, from its stderr."""
    children = stderr.decode().strip().splitlines()[-1]  # "0m0.150s 0m0.050s"
    return sum(float(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", children))


async def mqtt_js(
    url: str, client_id: str, topic: str, n: int, publish: Any
) -> tuple[float, float, float]:
    """Node's (began-to-last, first-to-last, CPU us a message). ``publish``: None for a
    backlog queued already, else a coroutine function that streams the messages."""
    env = {**os.environ, "MQTT_URL": url, "CLIENT_ID": client_id, "TOPIC": topic, "N": str(n)}
    proc = await asyncio.create_subprocess_exec(
        "node", str(PEERS / "consume.js"), cwd=PEERS, env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    if publish is not None:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"subscribed", line
        await asyncio.sleep(0.3)  # as for every consumer: subscribed, then the stream
        await publish()
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode == 0, f"mqtt.js consumer exited {proc.returncode}"
    result = json.loads(out.splitlines()[-1])
    assert result["invalid"] == 0
    return result["began_to_last"], result["first_to_last"], result["cpu_us"]


class PahoAlone:
    """paho's own loop (a thread), counting ``n`` messages; ``subscribed`` once granted."""

    def __init__(self, url: str, client_id: str, topic: str, n: int) -> None:
        self.broker = parse_mqtt_url(url)
        self.topic, self.n, self.count = topic, n, 0
        self.subscribed = threading.Event()
        self.began = self.first = self.last = 0.0
        self.cpu_first = self.cpu_last = 0.0
        c = self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
        )
        c.on_connect = lambda client, *_: client.subscribe(topic, 1)
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_message = self._message

    def _message(self, client: paho.Client, _u: Any, _m: paho.MQTTMessage) -> None:
        self.count += 1
        if self.count == 1:
            self.first, self.cpu_first = time.perf_counter(), time.process_time()
        if self.count == self.n:
            self.last, self.cpu_last = time.perf_counter(), time.process_time()
            client.disconnect()

    def run(self) -> None:
        self.began = time.perf_counter()
        self.client.connect(self.broker.host, self.broker.port, 30)
        self.client.loop_forever()

    @property
    def cpu_us(self) -> float:
        return (self.cpu_last - self.cpu_first) / max(self.n - 1, 1) * 1e6
