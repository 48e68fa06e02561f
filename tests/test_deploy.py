"""deploy/: the production Mosquitto config with the generated ACL, on a real broker."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import acl
from shared import activity as act
from shared.broker import PROJECT, PrivateMosquitto, free_port
from shared.config import parse_mqtt_url
from shared.mqtt import Connection
from shared.testing import Probe, ServiceProcess

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}
USERS = ("builder", "gateway", "observer")


def test_the_committed_acls_match_the_registry() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shared.acl", "--check"], cwd=PROJECT, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()


def test_every_service_may_write_its_own_topics_and_no_one_elses() -> None:
    builder, gateway = acl.writable("builder", "d"), acl.writable("gateway", "d")
    assert "d/state/build" in builder and "d/state/build" not in gateway
    assert "d/commands/builder/start" in gateway and "d/commands/builder/start" not in builder
    assert "d/services/builder/+" in builder and "d/services/gateway/+" in gateway
    assert "d/deadletter/gateway" not in builder


def production_config(d: Path, port: int, ws_port: int) -> str:
    """deploy/mosquitto/production.conf as it is, moved to private paths and ports."""
    text = (PROJECT / "deploy" / "mosquitto" / "production.conf").read_text()
    swaps = {
        "/etc/mosquitto/dovecote/": f"{d}/",
        "/var/lib/mosquitto/": f"{d}/data/",
        "log_dest syslog": f"log_dest file {d}/mosquitto.log",
        "listener 1883\n": f"listener {port} 127.0.0.1\n",
        "listener 9001\n": f"listener {ws_port} 127.0.0.1\n",
    }
    for old, new in swaps.items():
        assert old in text, f"production.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text  # (PrivateMosquitto adds "user root" when run as root)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    """A private Mosquitto running the production config, passwords and the project's ACL."""
    passwd = tmp_path / "passwd"
    for n, user in enumerate(USERS):
        flags = ["-c", "-b"] if n == 0 else ["-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwd), user, f"pw-{user}"], check=True)
    (tmp_path / "acl").write_text(acl.MOSQUITTO_ACL.read_text())
    port, ws_port = free_port(), free_port()
    b = PrivateMosquitto(
        tmp_path, port=port, ws_port=ws_port, config_text=production_config(tmp_path, port, ws_port)
    ).start()
    yield b
    b.stop()


def url(b: PrivateMosquitto, user: str, password: str | None = None) -> str:
    return f"mqtt://{user}:{password or 'pw-' + user}@{b.host}:{b.port}"


async def connect(b: PrivateMosquitto, user: str, password: str | None = None) -> Connection:
    conn = Connection(
        parse_mqtt_url(url(b, user, password)),
        f"test-{user}",
        on_message=lambda m: None,
        clean_session=True,
        manual_ack=False,
    )
    conn.start()
    return conn


async def test_production_mosquitto_lets_a_service_publish_only_its_own_topics(
    secured: PrivateMosquitto, tmp_path: Path
) -> None:
    observer = await Probe(url(secured, "observer"), "dovecote").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "DOVECOTE_"))}
    env |= {"MQTT_URL": url(secured, "builder"), "DOVECOTE_ROOT": "dovecote"}
    env |= {"BUILD_TICK_SECONDS": "0.05", "PYTHONUNBUFFERED": "1"}
    builder = ServiceProcess("builder", env, tmp_path).start()
    try:
        # Presence, the capability probe and $share subscriptions all pass the ACL.
        await observer.wait_for("services/builder/1", lambda a: a["type"] == "Join")
        assert "shared subscriptions: yes" in builder.log
        gateway = await connect(secured, "gateway")
        await gateway.wait_connected(10)
        gateway.publish(
            "dovecote/commands/builder/start", act.encode(act.new("Start", ADA, {"type": "Build"}))
        )
        await observer.wait_for("events/build/succeeded", timeout=20)

        # The builder's credentials cannot forge the gateway's command, nor a gateway
        # presence; the observer cannot publish at all. Each then publishes a topic it
        # may: once that has arrived, a forged one would have arrived before it.
        rogue = await connect(secured, "builder")
        await rogue.wait_connected(10)
        forged = act.encode(act.new("Start", ADA, {"type": "Build"}))
        rogue.publish("dovecote/commands/builder/start", forged)
        rogue.publish("dovecote/services/gateway/1", forged)
        marker = act.encode(act.new("Flag", ADA, {"type": "Note"}))
        rogue.publish("dovecote/deadletter/builder", marker)
        await observer.wait_for("deadletter/builder", lambda a: a["type"] == "Flag")
        observer.publish("state/build", forged)
        await asyncio.sleep(0.5)
        assert len(observer.on("commands/builder/start")) == 1  # the gateway's, not forged
        assert observer.on("services/gateway/1") == []
        assert all(a["type"] == "Update" for a in observer.on("state/build"))
        assert len(observer.on("events/build/started")) == 1  # no second build

        # Wrong password or none: no connection at all.
        intruder = await connect(secured, "gateway", "wrong")
        with pytest.raises(TimeoutError):
            await intruder.wait_connected(1.5)
        await intruder.stop(1)
        assert "disconnected, not authorised" in secured.log_file.read_text()
        await rogue.stop()
        await gateway.stop()
    finally:
        builder.stop()
        await observer.stop()


def test_the_env_example_lists_every_variable_the_code_reads() -> None:
    read = re.compile(
        r'(?:get_(?:str|int|float)\(|env\.get\(|_(?:int|float)\(env, )"([A-Z][A-Z0-9_]+)"'
    )
    names = set()
    for path in [PROJECT / "shared" / "config.py", *(PROJECT / "services").rglob("*.py")]:
        names |= set(read.findall(path.read_text()))
    assert {"MQTT_URL", "DOVECOTE_INSTANCE", "PORT", "BUILD_TICK_SECONDS"} <= names
    example = (PROJECT / "deploy" / "dovecote.env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert names - listed == set(), "add them to deploy/dovecote.env.example"
