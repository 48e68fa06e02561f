"""deploy/: the production Mosquitto config with the generated ACL, on a real broker."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from dovecote import activity as act
from dovecote import topics
from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Connection
from dovecote.project import PROJECT
from dovecote.testing.plugin import Probe, ServiceProcess, TestBroker
from dovecote.testing.rabbitmq import PrivateRabbitMQ
from dovecote.tools import acl
from dovecote.tools.broker import PrivateMosquitto, free_port
from tests import imagefiles
from tests.fixtures import deadletter_cli, wait_http

ADA = {"type": "Person", "id": "http://localhost:8080/users/ada", "name": "Ada"}
ROOT = "dovecote"  # the committed ACL is written for the default root
SERVICES = acl.services()  # every service folder: no list to keep in step
USERS = (*SERVICES, acl.OBSERVER, acl.OPERATOR)


def test_the_committed_acls_match_the_registry() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dovecote.tools.acl", "--check"], cwd=PROJECT, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()


def test_every_service_may_write_its_own_topics_and_no_one_elses() -> None:
    builder, gateway = acl.writable("builder", "d"), acl.writable("gateway", "d")
    assert "d/state/build" in builder and "d/state/build" not in gateway
    assert "d/commands/builder/start" in gateway and "d/commands/builder/start" not in builder
    assert "d/services/builder/+" in builder and "d/services/gateway/+" in gateway
    assert "d/deadletter/gateway" not in builder
    # {service} in the deadletters' own command topic names any service, not itself.
    assert "d/commands/+/redeliver" in acl.writable("deadletters", "d")
    assert not any("redeliver" in f for f in builder + gateway)


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
    """A private Mosquitto running the production config, passwords and the project's ACL.

    Plus debug logging, the only level at which Mosquitto logs a denied publish.
    """
    passwd = tmp_path / "passwd"
    for n, user in enumerate(USERS):
        flags = ["-c", "-b"] if n == 0 else ["-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwd), user, f"pw-{user}"], check=True)
    (tmp_path / "acl").write_text(acl.MOSQUITTO_ACL.read_text())
    port, ws_port = free_port(), free_port()
    config = production_config(tmp_path, port, ws_port) + "log_type debug\n"
    b = PrivateMosquitto(tmp_path, port=port, ws_port=ws_port, config_text=config).start()
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


def federation_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "DOVECOTE_"))}
    return env | {
        "DOVECOTE_ROOT": ROOT,
        "PORT": str(port),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BUILD_TICK_SECONDS": "0.05",
        "PYTHONUNBUFFERED": "1",
        "IMAGES_DIR": str(tmp_path / "images"),
        "POINTS_DB": str(tmp_path / "points.sqlite3"),
        "DEADLETTERS_DB": str(tmp_path / "deadletters.sqlite3"),
        "DOVECOTE_OUTBOX_DIR": str(tmp_path / "outbox"),
        "DOVECOTE_SERVICE_TOKEN": secrets.token_urlsafe(24),
        "DOVECOTE_HANDLER_ATTEMPTS": "1",
    }


def forgeries(user: str) -> list[str]:
    """One concrete topic of every registry entry that ``user`` does not own.

    Ownership is read from the registry, not from the generated ACL: an entry's publisher
    owns it; an entry every service publishes (``*``) is owned by the service its
    ``{service}`` level names (presence, dead letters), or by everyone when it has none.
    """
    other = next(s for s in SERVICES if s != user)
    out = []
    for t in topics.all_topics():
        if t.publisher == user or (t.publisher == "*" and "service" not in t.params):
            continue
        params = {p: (other if p == "service" else "forged") for p in t.params}
        out.append(t.address(ROOT, **params))
    return out


def has_id(wanted: str) -> Callable[[dict[str, Any]], bool]:
    return lambda a: bool(a["id"] == wanted)


UrlFor = Callable[[str], str]  # a user's name -> the MQTT_URL with its credentials


async def start_federation(
    env: dict[str, str], url_for: UrlFor, logs: Path
) -> list[ServiceProcess]:
    """The gateway first, answering before the rest start: its free port is taken before
    the others' many outgoing connections could take it as their ephemeral port."""
    order = ["gateway", *(s for s in SERVICES if s != "gateway")]
    procs = []
    try:
        for s in order:
            procs.append(ServiceProcess(s, env | {"MQTT_URL": url_for(s)}, logs).start())
            if s == "gateway":
                await wait_http(f"{env['PUBLIC_URL']}/healthz")
    except BaseException:
        stop_federation(procs)
        raise
    return procs


def stop_federation(procs: list[ServiceProcess]) -> None:
    for p in procs:
        exit_code = p.stop()
        tail = "\n".join(p.log.splitlines()[-30:])
        print(f"--- {p.name} (exit code {exit_code}):\n{tail}")


async def end_to_end(observer: Probe, env: dict[str, str], url_for: UrlFor) -> None:
    """Every service's part of an upload, a build and a dead letter's replay, each with
    its own credentials: the permissions are not too tight."""
    web = env["PUBLIC_URL"]
    for s in SERVICES:  # presence, the capability probes and subscriptions passed
        await observer.wait_online(s, timeout=30)
    await wait_http(f"{web}/healthz")

    # An upload: thumbnails, followers' notifications, points and a tweet.
    form = aiohttp.FormData()
    form.add_field("file", imagefiles.photo(800, 600), filename="cat.jpg")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{web}/api/images?as=ada", data=form) as r:
            assert r.status == 201, await r.text()
            image = (await r.json())["url"]
        [resized] = await observer.wait_for("events/image/resized", timeout=30)
        assert resized["object"]["id"] == image and resized["object"]["preview"]
        await observer.wait_for("users/grace/notifications")
        await observer.wait_for("users/linus/notifications")
        await observer.wait_for("events/tweet/created")
        [award] = await observer.wait_for("events/points/awarded")
        assert award["object"]["points"] == 10
        await observer.wait_for("state/leaderboard")
        # A build, asked for in a browser: progress, success, notification, points.
        async with http.post(f"{web}/api/builds?as=grace", json={}) as r:
            assert r.status == 202, await r.text()
        await observer.wait_for("events/build/succeeded", timeout=30)
        await observer.wait_for("users/grace/notifications")
        await observer.wait_for("events/points/awarded", count=2)
    assert observer.on("events/build/progress"), "QoS 0 progress ticks got through"

    # A dead letter, kept, listed and replayed by the operator's credentials: the
    # deadletters service may send commands/<another service>/redeliver.
    gateway = Connection(
        parse_mqtt_url(url_for("gateway")),
        "test-gateway",
        on_message=lambda m: None,
        clean_session=True,
        manual_ack=False,
    )
    gateway.start()
    await gateway.wait_connected(10)
    gateway.publish(f"{ROOT}/commands/builder/start", b"not an activity")
    await observer.wait_for("deadletter/builder")
    await gateway.stop()
    operator = env | {"MQTT_URL": url_for(acl.OPERATOR)}
    for _ in range(40):  # the deadletters service keeps it a moment later
        code, out, err = await deadletter_cli(operator, "list", "--json")
        assert code == 0, err
        if orjson.loads(out)["totalItems"]:
            break
        await asyncio.sleep(0.25)
    code, out, err = await deadletter_cli(operator, "replay", "--all", "--service", "builder")
    assert code == 0 and "replayed 1 letter(s)" in out, (out, err)
    await observer.wait_for("commands/builder/redeliver")
    await observer.wait_for("deadletter/builder", count=2)  # still garbage, parked again


def forged_by(user: str) -> bytes:
    return act.encode(act.new("Flag", ADA, {"type": "Note", "content": f"forged by {user}"}))


def leaked(observer: Probe) -> list[str]:
    return [m.topic for m in observer.messages if b"forged by" in m.payload]


@pytest.mark.slow
async def test_the_whole_federation_works_on_the_production_acl_and_no_one_can_forge(
    secured: PrivateMosquitto, tmp_path: Path
) -> None:
    """Each service as a real process with its own credentials on the committed ACL.

    Not too tight: an upload and a build go end to end through every service, and an
    operator's replay of a dead letter reaches the service that parked it, with no publish
    denied on the way. Not too loose: every user's credentials then try every topic that
    user does not own, and none of those messages reaches anyone.
    """
    topics.load_service_topics()
    observer = await Probe(url(secured, acl.OBSERVER), ROOT).start()
    env = federation_env(tmp_path, free_port())
    procs = await start_federation(env, lambda user: url(secured, user), tmp_path)
    try:
        await end_to_end(observer, env, lambda user: url(secured, user))
        log = secured.log_file.read_text()
        assert "Denied PUBLISH" not in log, "the ACL refused a service its own topic"

        # Every user tries every topic it does not own; then a topic it does, on the same
        # connection: once that has arrived, a forged one would have arrived before it.
        tried = 0
        for user in USERS:
            rogue = await connect(secured, user)
            await rogue.wait_connected(10)
            for topic in forgeries(user):
                rogue.publish(topic, forged_by(user))
                tried += 1
            if user != acl.OBSERVER:  # the observer may publish nothing at all
                marker = act.new("Flag", ADA, {"type": "Note", "content": f"marker {user}"})
                allowed = "services/query" if user in SERVICES else "commands/deadletters/list"
                rogue.publish(f"{ROOT}/{allowed}", act.encode(marker))
                await observer.wait_for(allowed, has_id(marker["id"]))
            await rogue.stop()
        await asyncio.sleep(0.5)
        assert tried > 10 * len(USERS)
        denied = secured.log_file.read_text().count("Denied PUBLISH")
        assert denied == tried, f"{tried} forgeries tried, {denied} denied"
        assert leaked(observer) == [], "forged messages got through"
        assert all(p.alive() for p in procs)

        # Wrong password or none: no connection at all.
        intruder = await connect(secured, "gateway", "wrong")
        with pytest.raises(TimeoutError):
            await intruder.wait_connected(1.5)
        await intruder.stop(1)
        assert "disconnected, not authorised" in secured.log_file.read_text()
    finally:
        stop_federation(procs)
        await observer.stop()


def test_the_env_example_lists_every_variable_the_code_reads() -> None:
    read = re.compile(
        r'(?:get_(?:str|int|float)\(|\.get\(|_(?:int|float)\(env, )"([A-Z][A-Z0-9_]+)"'
    )
    runtime = [p for p in (PROJECT / "shared" / "dovecote").glob("*.py")]
    names = set()
    for path in [*runtime, *(PROJECT / "services").rglob("*.py")]:
        names |= set(read.findall(path.read_text()))
    assert {"MQTT_URL", "DOVECOTE_INSTANCE", "PORT", "BUILD_TICK_SECONDS"} <= names
    example = (PROJECT / "deploy" / "dovecote.env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert names - listed == set(), "add them to deploy/dovecote.env.example"


def rabbitmq_users(b: PrivateRabbitMQ, tmp_path: Path) -> UrlFor:
    """Run deploy/rabbitmq/permissions.sh as it is, against this node (a ``rabbitmqctl``
    on PATH that names it); each user then logs in to vhost ``dovecote`` as ``dovecote:<user>``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "rabbitmqctl"
    shim.write_text(f'#!/bin/sh\nexec /usr/lib/rabbitmq/bin/rabbitmqctl -n {b.name} "$@"\n')
    shim.chmod(0o755)
    env = b.env | {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env |= {f"DOVECOTE_PW_{u.upper()}": f"pw-{u}" for u in USERS}
    done = subprocess.run(
        ["sh", str(acl.RABBITMQ_PERMISSIONS)], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return lambda user: f"mqtt://dovecote%3A{user}:pw-{user}@{b.host}:{b.port}"


@pytest.mark.slow
@pytest.mark.brokers("rabbitmq")
async def test_the_whole_federation_works_on_the_rabbitmq_permissions_and_no_one_can_forge(
    broker: TestBroker, tmp_path: Path
) -> None:
    """The same federation on RabbitMQ, with the generated permissions script's users.

    RabbitMQ closes a connection that publishes where it may not write: each forgery goes
    on its own connection, which must be closed by the broker, its message seen by no one.
    """
    assert isinstance(broker, PrivateRabbitMQ)
    topics.load_service_topics()
    url_for = rabbitmq_users(broker, tmp_path)
    observer = await Probe(url_for(acl.OBSERVER), ROOT).start()
    env = federation_env(tmp_path, free_port())
    procs = await start_federation(env, url_for, tmp_path)
    try:
        await end_to_end(observer, env, url_for)
        tried = 0
        for user in USERS:
            for topic in forgeries(user):
                rogue = Connection(
                    parse_mqtt_url(url_for(user)),
                    f"rogue-{user}-{tried}",
                    on_message=lambda m: None,
                    clean_session=True,
                    manual_ack=False,
                )
                rogue.start()
                await rogue.wait_connected(10)
                rogue.disconnected.clear()
                rogue.publish(topic, forged_by(user), qos=0)
                try:  # refused: the broker closes the connection
                    await asyncio.wait_for(rogue.disconnected.wait(), 5)
                except TimeoutError:
                    raise AssertionError(f"{user} may publish {topic}") from None
                # Not waiting for its reconnect (a busy node can take a keepalive to answer
                # it): stop() also closes a socket that is still connecting.
                await rogue.stop(1)
                tried += 1
        await asyncio.sleep(0.5)
        assert tried > 10 * len(USERS)
        assert leaked(observer) == [], "forged messages got through"
        assert all(p.alive() for p in procs)
    finally:
        stop_federation(procs)
        await observer.stop()
