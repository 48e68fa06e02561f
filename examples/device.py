"""A person's own device: their notifications, straight from the broker, no gateway.

The seed's reason for MQTT: a phone keeps one MQTT-over-websockets connection and hears
"someone you follow uploaded" the moment it happens. Each person gets a login of their own,
which may read ``<root>/users/<them>/notifications`` and nothing else (the broker refuses
any other subscription, and every publish). An operator mints it:

    dovecote logins person ada > ada.json        # as the broker's admin (MQTT_URL)
    python -m examples.device --url wss://mq.example.org:8081/mqtt --login ada.json \
        --ca-file /etc/dovecote/ca.crt

It prints one line per notification, as it arrives (``--json``: the activity itself).
Only paho-mqtt: the same few lines work on any device with an MQTT client.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def describe(payload: bytes) -> str:
    """One line for a person: the notification's summary, or what it announces."""
    try:
        note = json.loads(payload)
        inner = note.get("object") or {}
        return str(note.get("summary") or inner.get("summary") or inner.get("name") or note)
    except (ValueError, AttributeError):
        return f"(not a notification: {payload[:80]!r})"


def client_for(url: str, login: dict[str, str], ca_file: str | None) -> mqtt.Client:
    parts = urlsplit(url)
    websockets = parts.scheme in ("ws", "wss")
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=login["clientId"],  # the login is pinned to it: any other is refused
        clean_session=True,
        protocol=mqtt.MQTTv311,
        transport="websockets" if websockets else "tcp",
    )
    if websockets:
        client.ws_set_options(path=parts.path or "/mqtt")
    if parts.scheme in ("wss", "mqtts"):  # the broker's certificate and name are checked
        client.tls_set_context(ssl.create_default_context(cafile=ca_file))
    client.username_pw_set(login["username"], login["password"])
    return client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="wss://host:8081/mqtt (or mqtts://)")
    parser.add_argument("--login", required=True, help="the JSON of `dovecote logins person`")
    parser.add_argument("--ca-file", help="the CA of the broker's certificate (PEM)")
    parser.add_argument("--json", action="store_true", help="print each activity whole")
    args = parser.parse_args(argv)
    with open(args.login) as f:
        login = json.load(f)
    parts = urlsplit(args.url)
    client = client_for(args.url, login, args.ca_file)
    failed: list[str] = []

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            failed.append(f"the broker refused the login: {reason}")
            c.disconnect()
            return
        c.subscribe(login["topic"], 1)

    def on_subscribe(c: mqtt.Client, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
        if any(code.is_failure for code in codes):
            failed.append(f"the broker refused the subscription to {login['topic']}")
            c.disconnect()
            return
        print(f"listening on {login['topic']}", flush=True)

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        print(payload.decode() if args.json else describe(payload), flush=True)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    default_port = {"ws": 80, "wss": 443, "mqtt": 1883, "mqtts": 8883}.get(parts.scheme, 1883)
    try:
        client.connect(parts.hostname or "localhost", parts.port or default_port, 60)
        client.loop_forever()  # reconnects by itself while the login is valid
    except KeyboardInterrupt:
        client.disconnect()
    except (OSError, ssl.SSLError) as exc:
        failed.append(f"cannot reach {parts.hostname}: {exc}")
    if failed:
        print(f"device: {failed[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
