"""deploy/: the production Mosquitto config with the generated ACL, on a real broker."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from dovecote import activity as act
from dovecote import letters, pool, topics
from dovecote.config import BrokerAddress, ConfigError, Settings, parse_mqtt_url
from dovecote.mqtt import Connection
from dovecote.project import PROJECT
from dovecote.tools import acl, logins, manifest, units
from dovecote.tools.broker import PrivateMosquitto, free_port
from dovecote_testing.gateway import DEMO_PASSWORD, signed_in
from dovecote_testing.plugin import Probe, ServiceProcess, TestBroker
from dovecote_testing.rabbitmq import PrivateRabbitMQ
from services.notifier import topics as notifier_topics
from tests import imagefiles
from tests.chaos import FaultRow, record
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


def test_the_committed_acls_let_no_service_but_the_gateway_read_notifications() -> None:
    """A person's notifications are read on the bus by the gateway (which forwards each to
    that person's sockets only) and the observer (the whole root, for operators); the
    notifier only writes them. On both brokers, as deployed (``deploy/``)."""
    one = "dovecote/users/ada/notifications"
    roles = orjson.loads((PROJECT / "deploy/mosquitto/roles.json").read_bytes())["roles"]

    def mosquitto_reads(role: dict[str, Any]) -> bool:
        acls = [a for a in role["acls"] if a["allow"]]
        subscribe = any(
            a["acltype"] == "subscribePattern" and pool.covers(a["topic"], one) for a in acls
        )
        receive = any(
            a["acltype"] == "publishClientReceive" and pool.covers(a["topic"], one) for a in acls
        )
        return subscribe and receive

    assert {r["rolename"] for r in roles if mosquitto_reads(r)} == {
        "dovecote-gateway",
        "dovecote-observer",
    }
    script = (PROJECT / "deploy/rabbitmq/permissions.sh").read_text()
    users = [shlex.split(line) for line in script.splitlines() if line.startswith("user ")]
    # user <name> <password> <session queues> <write regex> <read regex>
    readers = {u[1] for u in users if re.match(u[5], one.replace("/", "."))}
    everyone = manifest.load().logins()  # the Python services and the participants
    assert len(users) == len(everyone) + 2 and readers == {"gateway", "observer"}


def test_every_service_has_its_systemd_unit_and_systemd_accepts_each(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dovecote.tools.units", "--check"], cwd=PROJECT, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    everyone = manifest.load().logins()  # the Python services and the participants
    assert "captioner" in everyone  # a participant: node, from its own folder
    assert [p.name for p in units.generated()] == [f"dovecote-{s}@.service" for s in everyone]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze not found: the units cannot be checked (install systemd)")
    shutil.copy(units.UNITS_DIR / "dovecote.target", tmp_path)
    for path in units.generated():  # as installed in /opt/dovecote, but in this checkout
        text = path.read_text().replace("/opt/dovecote/.venv/bin/python", sys.executable)
        (tmp_path / path.name).write_text(text.replace("/opt/dovecote", str(PROJECT)))
    instances = [str(tmp_path / p.name.replace("@.", "@1.")) for p in units.generated()]
    verified = subprocess.run(
        [analyze, "verify", "--man=no", *instances], capture_output=True, text=True, timeout=60
    )
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


def test_every_service_may_write_its_own_topics_and_no_one_elses() -> None:
    builder, gateway = acl.writable("builder", "d"), acl.writable("gateway", "d")
    assert "d/state/build" in builder and "d/state/build" not in gateway
    assert "d/commands/builder/start" in gateway and "d/commands/builder/start" not in builder
    assert "d/services/builder/+" in builder and "d/services/gateway/+" in gateway
    assert "d/deadletter/gateway" not in builder
    # {service} in the deadletters' own command topic names any service, not itself.
    assert "d/commands/+/redeliver" in acl.writable("deadletters", "d")
    assert not any("redeliver" in f for f in builder + gateway)
    # Its own metrics only; the gateway sends the operators' commands for its operations page.
    assert "d/metrics/builder/+" in builder and "d/metrics/gateway/+" not in builder
    assert "d/commands/deadletters/replay" in gateway
    assert "d/commands/deadletters/replay" not in builder
    assert "d/commands/deadletters/replay" in acl.writable(acl.OPERATOR, "d")


def production_config(d: Path, port: int, ws_port: int, certs: Certs) -> str:
    """deploy/mosquitto/production.conf as it is, moved to private paths and ports."""
    text = (PROJECT / "deploy" / "mosquitto" / "production.conf").read_text()
    swaps = {
        "/etc/mosquitto/dovecote/": f"{d}/",
        "/etc/mosquitto/certs/server.crt": str(certs.server_crt),
        "/etc/mosquitto/certs/server.key": str(certs.server_key),
        "/var/lib/mosquitto/": f"{d}/data/",
        "log_dest syslog": f"log_dest file {d}/mosquitto.log",
        "listener 8883\n": f"listener {port} 127.0.0.1\n",
        "listener 8081\n": f"listener {ws_port} 127.0.0.1\n",
    }
    for old, new in swaps.items():
        assert old in text, f"production.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text  # (PrivateMosquitto adds "user root" when run as root)


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_crt: Path
    server_key: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA of our own and a server certificate it signed for 127.0.0.1 and localhost."""
    d = tmp_path_factory.mktemp("certs")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Dovecote test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )
    (d / "server.key").chmod(0o644)  # Mosquitto may run as another user
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key")


@dataclass
class Secured:
    """A private Mosquitto on production.conf: TLS only, every login pinned to its id."""

    broker: PrivateMosquitto
    certs: Certs
    logins: dict[str, logins.Login]  # by username

    def url(self, username: str, scheme: str = "mqtts") -> str:
        login = self.logins[username]
        port = self.broker.ws_port if scheme == "wss" else self.broker.port
        return login.url(scheme, self.broker.host, port)

    def address(self, username: str, scheme: str = "mqtts") -> BrokerAddress:
        return parse_mqtt_url(self.url(username, scheme), str(self.certs.ca))

    def connection(self, username: str, scheme: str = "mqtts") -> Connection:
        return Connection(
            self.address(username, scheme),
            self.logins[username].client_id,
            on_message=lambda m: None,
            clean_session=True,
            manual_ack=False,
        )


WATCH = "watch"  # the test's own observer, so that the observer's login stays free to try


@pytest.fixture
def secured(tmp_path: Path, certs: Certs) -> Iterator[Secured]:
    """The production config with its dynamic-security file written by `dovecote logins
    init`'s own function: two logins per service (worker 1 runs; the test plays 2),
    the observer, the operator and the admin. Plus debug logging, the only level at which
    Mosquitto logs a denied publish."""
    every = logins.standing_logins(ROOT, dict.fromkeys(SERVICES, 2))
    every.append(
        logins.Login(WATCH, "pw-watch", f"{ROOT}-{WATCH}", logins.role_name(ROOT, "observer"))
    )
    (tmp_path / "dynamic-security.json").write_text(json.dumps(logins.dynsec_config(ROOT, every)))
    port, ws_port = free_port(), free_port()
    config = production_config(tmp_path, port, ws_port, certs) + "log_type debug\n"
    b = PrivateMosquitto(
        tmp_path, port=port, ws_port=ws_port, config_text=config, ca_file=str(certs.ca)
    ).start()
    yield Secured(b, certs, {login.username: login for login in every})
    b.stop()


def user_of(who: str, n: int = 1) -> str:
    """A user of the registry (a service, observer, operator) -> its login's name."""
    return f"{who}-{n}" if who in SERVICES else who


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
        "DOVECOTE_DATA_DIR": str(tmp_path / "data"),  # accounts, inboxes
        "DOVECOTE_SESSION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "DEMO_PASSWORD": DEMO_PASSWORD,
    }


def forgeries(user: str) -> list[str]:
    """One concrete topic of every registry entry that ``user`` does not own.

    Ownership is read from the registry, not from the generated ACL: an entry's publisher
    owns it; an entry every service publishes (``*``) is owned by the service its
    ``{service}`` level names (presence, dead letters), or by everyone when it has none; the
    operator's commands are also owned by a service that acts for operators (the gateway).
    """
    other = next(s for s in SERVICES if s != user)
    operates = user in SERVICES and manifest.load().by_name[user].operator
    out = []
    for t in topics.all_topics():
        if t.publisher == user or (t.publisher == "*" and "service" not in t.params):
            continue
        if t.publisher == acl.OPERATOR and operates:
            continue
        params = {p: (other if p == "service" else "forged") for p in t.params}
        out.append(t.address(ROOT, **params))
    return out


def has_id(wanted: str) -> Callable[[dict[str, Any]], bool]:
    return lambda a: bool(a["id"] == wanted)


UrlFor = Callable[[str], str]  # a user's name -> the MQTT_URL with its credentials


async def start_federation(
    env: dict[str, str], url_for: UrlFor, logs: Path, amqp_for: UrlFor | None = None
) -> list[ServiceProcess]:
    """The gateway first, answering before the rest start: its free port is taken before
    the others' many outgoing connections could take it as their ephemeral port."""
    order = ["gateway", *(s for s in SERVICES if s != "gateway")]
    procs = []
    try:
        for s in order:
            own = {"MQTT_URL": url_for(s)}
            if amqp_for is not None:  # pools read their queue with the same credentials
                own["DOVECOTE_AMQP_URL"] = amqp_for(s)
            procs.append(ServiceProcess(s, env | own, logs).start())
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


ConnectAs = Callable[[str], Connection]  # a registry user -> a connection of its own


async def end_to_end(
    observer: Probe, env: dict[str, str], connect_as: ConnectAs, operator: dict[str, str]
) -> None:
    """Every service's part of an upload, a build and a dead letter's replay, each with
    its own credentials: the permissions are not too tight."""
    web = env["PUBLIC_URL"]
    for s in SERVICES:  # presence, the capability probes and subscriptions passed
        await observer.wait_online(s, timeout=30)
    await wait_http(f"{web}/healthz")

    # An upload: thumbnails, followers' notifications, points and a tweet.
    form = aiohttp.FormData()
    form.add_field("file", imagefiles.photo(800, 600), filename="cat.jpg")
    async with await signed_in(web, "ada") as http, await signed_in(web, "grace") as grace:
        async with http.post(f"{web}/api/images", data=form) as r:
            assert r.status == 201, await r.text()
            image = (await r.json())["url"]
        [resized] = await observer.wait_for("events/image/resized", timeout=30)
        assert resized["object"]["id"] == image and resized["object"]["preview"]
        await observer.wait_for("users/grace/notifications")
        await observer.wait_for("users/linus/notifications")
        # Grace's inbox, asked of the notifier and answered, each with its own credentials.
        async with grace.get(f"{web}/api/inbox") as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["unread"] == 1
        async with grace.post(f"{web}/api/inbox/read", json={}) as r:
            assert r.status == 202, await r.text()
        await observer.wait_for("users/grace/inbox", lambda a: a["object"]["unread"] == 0)
        await observer.wait_for("events/tweet/created")
        [award] = await observer.wait_for("events/points/awarded")
        assert award["object"]["points"] == 10
        await observer.wait_for("state/leaderboard")
        # A build, asked for in a browser: progress, success, notification, points.
        async with grace.post(f"{web}/api/builds", json={}) as r:
            assert r.status == 202, await r.text()
        await observer.wait_for("events/build/succeeded", timeout=30)
        await observer.wait_for("users/grace/notifications")
        await observer.wait_for("events/points/awarded", count=2)
    assert observer.on("events/build/progress"), "QoS 0 progress ticks got through"

    # A dead letter, kept, listed and replayed by the operator's credentials: the
    # deadletters service may send commands/<another service>/redeliver.
    gateway = connect_as("gateway")
    gateway.start()
    await gateway.wait_connected(10)
    gateway.publish(f"{ROOT}/commands/builder/start", b"not an activity")
    await observer.wait_for("deadletter/builder")
    await gateway.stop()
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


def connect_packet(client_id: str, username: str, password: str, clean: bool) -> bytes:
    """An MQTT 3.1.1 CONNECT, by hand: a login's bare attempt at a client id."""

    def field(text: str) -> bytes:
        data = text.encode()
        return len(data).to_bytes(2, "big") + data

    flags = 0xC0 | (0x02 if clean else 0)  # username, password, clean session?
    body = field("MQTT") + bytes([4, flags]) + (30).to_bytes(2, "big")
    body += field(client_id) + field(username) + field(password)
    length, size = b"", len(body)
    while True:
        size, digit = divmod(size, 128)
        length += bytes([digit | (0x80 if size else 0)])
        if not size:
            return b"\x10" + length + body


def connack(b: Secured, client_id: str, username: str, password: str, clean: bool) -> int:
    """The CONNACK return code (0 accepted, 5 not authorised) of one bare attempt, over
    TLS; an accepted one disconnects at once (no will, and a resumed session stays)."""
    tls = ssl.create_default_context(cafile=str(b.certs.ca))
    with (
        socket.create_connection((b.broker.host, b.broker.port), 5) as raw,
        tls.wrap_socket(raw, server_hostname=b.broker.host) as sock,
    ):
        sock.sendall(connect_packet(client_id, username, password, clean))
        reply = sock.recv(4)
        if len(reply) == 4 and reply[3] == 0:
            sock.sendall(b"\xe0\x00")
    assert len(reply) == 4 and reply[0] == 0x20, f"no CONNACK: {reply!r}"
    return reply[3]


def uploads(env: dict[str, str], n: int) -> list[dict[str, Any]]:
    """``n`` upload events as the gateway publishes them (each earns points once)."""
    web = env["PUBLIC_URL"]
    out = []
    for _ in range(n):
        url = f"{web}/images/{uuid.uuid4().hex}"
        obj: dict[str, Any] = {"type": "Image", "id": url, "url": url, "name": "x"}
        obj |= {"mediaType": "image/jpeg", "width": 10, "height": 10, "size": 10}
        person = {"type": "Person", "id": f"{web}/users/ada", "name": "Ada"}
        out.append(act.new("Create", person, obj, context=f"urn:uuid:{uuid.uuid4()}"))
    return out


@pytest.mark.real_broker  # starts a private broker of its own
@pytest.mark.slow
async def test_the_whole_federation_works_on_the_production_config_and_no_one_can_forge(
    secured: Secured, tmp_path: Path
) -> None:
    """Each service as a real process with a login of its own, over TLS, on
    production.conf with the dynamic-security roles generated from the registry.

    Not too tight: an upload and a build go end to end through every service, and an
    operator's replay of a dead letter reaches the service that parked it, with no publish
    denied on the way. Not too loose: every user's login then tries every topic that user
    does not own, and none of those messages reaches anyone.
    """
    manifest.load()
    ca = str(secured.certs.ca)
    observer = Probe(secured.url(WATCH), ROOT, client_id=f"{ROOT}-{WATCH}", ca_file=ca)
    await observer.start()
    env = federation_env(tmp_path, free_port()) | {
        "MQTT_CA_FILE": ca,
        "DOVECOTE_BROKER_CAPABILITIES": logins.SHARED_AND_RETAINED,
    }
    procs = await start_federation(env, lambda s: secured.url(user_of(s)), tmp_path)
    operator = env | {
        "MQTT_URL": secured.url(acl.OPERATOR),
        "MQTT_CLIENT_ID": secured.logins[acl.OPERATOR].client_id,
    }
    try:
        await end_to_end(observer, env, lambda who: secured.connection(user_of(who, 2)), operator)
        log = secured.broker.log_file.read_text()
        assert "Denied PUBLISH" not in log, "a role refused a service its own topic"

        # Every user tries every topic it does not own; then a topic it does, on the same
        # connection: once that has arrived, a forged one would have arrived before it.
        tried = 0
        for user in USERS:
            rogue = secured.connection(user_of(user, 2))
            rogue.start()
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
        denied = secured.broker.log_file.read_text().count("Denied PUBLISH")
        assert denied == tried, f"{tried} forgeries tried, {denied} denied"
        assert leaked(observer) == [], "forged messages got through"
        assert all(p.alive() for p in procs)

        # Issue 11: the deadletters login may write commands/points/redeliver. Five letters
        # it makes up, naming the upload event (which it may not write), for people who do
        # not exist: points refuses each (unsigned) and parks it; nothing is awarded.
        rogue = secured.connection(user_of("deadletters", 2))
        rogue.start()
        await rogue.wait_connected(10)
        for n, event in enumerate(uploads(env, 5)):
            event["actor"] = {"type": "Person", "id": f"{env['PUBLIC_URL']}/users/ghost{n}"}
            flag = letters.letter(
                act.service("points"),
                f"{ROOT}/events/image/created",
                act.encode(event),
                "made up",
                0,
                262144,
            )
            undo = act.new("Undo", act.service("deadletters"), flag)
            rogue.publish(f"{ROOT}/commands/points/redeliver", act.encode(undo))
        await observer.wait_for("deadletter/points", lambda a: "unsigned" in a["summary"], count=5)
        await rogue.stop()
        ghosts = [a for a in observer.on("events/points/awarded") if "ghost" in str(a)]
        assert ghosts == [], "a made-up letter was redelivered"

        # Wrong password: no connection at all.
        assert connack(secured, f"{ROOT}-gateway-2", "gateway-2", "wrong", True) == 5
    finally:
        stop_federation(procs)
        await observer.stop()


async def session_row(observer: Probe, events: list[dict[str, Any]], fault: str) -> None:
    """The fault-table row of a session fight: points' queued uploads, each awarded once."""
    contexts = {e["context"] for e in events}
    with contextlib.suppress(AssertionError):  # a loss shows in the row, and fails there
        await observer.wait_for(
            "events/points/awarded", lambda a: a.get("context") in contexts, count=5, timeout=60
        )
    await asyncio.sleep(0.5)  # a duplicate would come right behind
    seen = [a["context"] for a in observer.on("events/points/awarded") if a["context"] in contexts]
    lost = len(contexts - set(seen))
    record(FaultRow(fault, len(contexts), len(set(seen)), lost, len(seen) - len(set(seen))))


@pytest.mark.real_broker  # the secured fixture: a private broker of its own
@pytest.mark.slow
async def test_no_login_can_take_another_logins_session(secured: Secured, tmp_path: Path) -> None:
    """Issue 11: the observer took points' session and acknowledged 16 of 40 upload events.

    Points is stopped (its session keeps what comes), 5 uploads are published; then every
    login connects with every other login's client id, asking for that session: each is
    refused. Points, back, finds the 5 in its session and awards all of them.
    """
    manifest.load()
    ca = str(secured.certs.ca)
    observer = Probe(secured.url(WATCH), ROOT, client_id=f"{ROOT}-{WATCH}", ca_file=ca)
    await observer.start()
    env = federation_env(tmp_path, free_port()) | {
        "MQTT_CA_FILE": ca,
        "DOVECOTE_BROKER_CAPABILITIES": logins.SHARED_AND_RETAINED,
    }
    points_env = env | {"MQTT_URL": secured.url("points-1")}
    points = ServiceProcess("points", points_env, tmp_path).start()
    try:
        await observer.wait_online("points", timeout=30)
        assert await asyncio.to_thread(points.stop) == 0
        await observer.wait_for("services/points/1", lambda a: a["type"] == "Leave")
        gateway = secured.connection("gateway-2")
        gateway.start()
        await gateway.wait_connected(10)
        events = uploads(env, 5)
        for event in events:
            gateway.publish(f"{ROOT}/events/image/created", act.encode(event))
        assert await gateway.flush(10)
        await gateway.stop()

        everyone = list(secured.logins.values())
        tried = 0
        for thief in everyone:
            for victim in everyone:
                if victim is thief:
                    continue
                code = connack(secured, victim.client_id, thief.username, thief.password, False)
                assert code == 5, f"{thief.username} took {victim.client_id} (CONNACK {code})"
                tried += 1
            if thief.username.endswith("-1"):
                continue  # its worker's session: not to be disturbed by the control below
            # ... while its own id works (a control: the refusals are about the id).
            assert connack(secured, thief.client_id, thief.username, thief.password, True) == 0
        assert tried == len(everyone) * (len(everyone) - 1)

        points = ServiceProcess("points", points_env, tmp_path).start()
        await session_row(observer, events, f"{tried} logins take others' client ids (Mosquitto)")
    finally:
        points.stop()
        await observer.stop()


@pytest.mark.real_broker  # the secured fixture: a private broker of its own
async def test_each_login_reads_exactly_what_its_handlers_subscribe_to(secured: Secured) -> None:
    """Issue 11: every service login could read users/+/notifications; only the gateway
    forwards them. Each service's login subscribes to every registry filter (plainly and
    as a $share) and to the whole root: granted exactly where one of its workers'
    subscriptions (its handlers, its inbox, the presence query, the start-up probe)
    covers it."""
    classes = manifest.load().by_name
    wanted = [t.filter(ROOT) for t in topics.all_topics()] + [f"{ROOT}/#"]
    checked = 0
    for service in SERVICES:
        mine = [*classes[service].filters(ROOT), topics.PROBE.filter(ROOT)]  # + start-up probe
        conn = secured.connection(f"{service}-2")
        conn.start()
        await conn.wait_connected(10)
        for f in wanted:
            for form in (f, f"$share/{service}/{f}"):
                granted = conn.subscribe(form, 1)
                assert granted is not None
                [code] = await asyncio.wait_for(granted, 10)
                expected = any(pool.covers(m, f) for m in mine)
                assert (code < 0x80) == expected, f"{service} subscribing {form}: {code:#x}"
                checked += 1
        await conn.stop()
    notifications = notifier_topics.NOTIFICATION.filter(ROOT)
    readers = [
        s for s in SERVICES if any(pool.covers(m, notifications) for m in classes[s].filters(ROOT))
    ]
    assert readers == ["gateway"]
    assert checked == 2 * len(wanted) * len(SERVICES)


def notification(person: str, text: str) -> bytes:
    """A notification for ``person`` as the notifier publishes it."""
    web = "http://127.0.0.1:8080"
    upload = act.new("Create", ADA, {"type": "Note", "content": text})
    note = act.new("Announce", act.service("notifier"), upload, summary=text)
    note["to"] = [f"{web}/users/{person}"]
    return act.encode(note)


@pytest.mark.real_broker  # the secured fixture: a private broker of its own
@pytest.mark.slow
async def test_a_persons_own_device_reads_their_notifications_and_nothing_else(
    secured: Secured, tmp_path: Path
) -> None:
    """Issue 11: ada gets a login of her own, minted on the running broker through the
    dynamic-security plugin's control topic. With it, over secure websockets, every
    subscription but her own topic is refused and nothing she publishes reaches anyone;
    the example device client prints her notifications and not grace's. Minting again
    replaces it: the old password stops working and the device is cut off."""
    admin = secured.address(logins.ADMIN)
    ada = await logins.mint_person(admin, f"{ROOT}-{logins.ADMIN}", "ada", ROOT)
    # grace's through the command an operator types (as the admin, from the environment)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dovecote.tools.cli", "logins", "person", "grace"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ
        | {
            "MQTT_URL": secured.url(logins.ADMIN),
            "MQTT_CA_FILE": str(secured.certs.ca),
            "MQTT_CLIENT_ID": f"{ROOT}-{logins.ADMIN}",
        },
    )
    assert done.returncode == 0, done.stderr
    minted = json.loads(done.stdout)
    assert minted["topic"] == f"{ROOT}/users/grace/notifications"
    grace = logins.Login(
        minted["username"], minted["password"], minted["clientId"], f"{ROOT}-person-grace"
    )
    assert ada.username == "person-ada" and ada.client_id == f"{ROOT}-person-ada"
    secured.logins |= {ada.username: ada, grace.username: grace}
    topic = f"{ROOT}/users/ada/notifications"
    ca = str(secured.certs.ca)
    watch = Probe(secured.url(WATCH), ROOT, client_id=f"{ROOT}-{WATCH}", ca_file=ca)
    await watch.start()
    notifier = secured.connection("notifier-2")
    notifier.start()
    await notifier.wait_connected(10)

    # Her login (one client id: the device is not running yet) tries everything else.
    own = secured.connection(ada.username, "wss")
    own.start()
    await own.wait_connected(10)
    for f in (
        f"{ROOT}/users/grace/notifications",
        f"{ROOT}/users/+/notifications",
        f"{ROOT}/#",
        "#",
        f"{ROOT}/events/image/created",
    ):
        granted = own.subscribe(f, 1)
        assert granted is not None
        assert (await asyncio.wait_for(granted, 10))[0] >= 0x80, f"ada may read {f}"
    granted = own.subscribe(topic, 1)
    assert granted is not None and (await asyncio.wait_for(granted, 10))[0] == 1
    for t in (topic, f"{ROOT}/events/image/created", f"{ROOT}/services/query"):
        own.publish(t, forged_by("ada"))
    assert await own.flush(10)
    await own.stop()
    await asyncio.sleep(0.5)
    assert leaked(watch) == [], "ada's publishes got through"

    credential = tmp_path / "ada.json"
    fields = {"username": ada.username, "password": ada.password, "clientId": ada.client_id}
    credential.write_text(json.dumps(fields | {"topic": topic}))
    wss = f"wss://{secured.broker.host}:{secured.broker.ws_port}/mqtt"
    device = subprocess.Popen(  # noqa: ASYNC220 (its own process, read in a thread)
        [
            sys.executable,
            "-m",
            "examples.device",
            "--url",
            wss,
            "--login",
            str(credential),
            "--ca-file",
            ca,
        ],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert device.stdout is not None and device.stderr is not None

    async def next_line() -> str:
        assert device.stdout is not None
        return (await asyncio.wait_for(asyncio.to_thread(device.stdout.readline), 15)).strip()

    try:
        assert await next_line() == f"listening on {topic}"
        notifier.publish(f"{ROOT}/users/grace/notifications", notification("grace", "grace"))
        notifier.publish(topic, notification("ada", "for ada"))
        assert await next_line() == "for ada"  # grace's, published first, never came

        # Minted again: the old password is refused, the device is cut off.
        renewed = await logins.mint_person(admin, f"{ROOT}-{logins.ADMIN}", "ada", ROOT)
        assert renewed.password != ada.password
        code = await asyncio.wait_for(asyncio.to_thread(device.wait), 30)
        assert code == 1 and "refused the login" in device.stderr.read()
        assert connack(secured, ada.client_id, ada.username, ada.password, True) == 5
        assert connack(secured, ada.client_id, ada.username, renewed.password, True) == 0
    finally:
        if device.poll() is None:
            device.kill()
            device.wait()
        device.stdout.close()
        device.stderr.close()
        await notifier.stop()
        await watch.stop()


def test_logins_init_writes_the_plugins_file_and_one_secret_env_per_login(
    tmp_path: Path,
) -> None:
    """`dovecote logins init`: every login pinned to its id, each env file private."""
    target, env_dir = tmp_path / "dynamic-security.json", tmp_path / "logins"
    args = ["logins", "init", str(target), "--url", "mqtts://mq.example:8883"]
    args += ["--env-dir", str(env_dir), "--workers", "gateway=2", "resizer"]
    done = subprocess.run(
        [sys.executable, "-m", "dovecote.tools.cli", *args], cwd=PROJECT, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    config = json.loads(target.read_text())
    pinned = {c["username"]: c["clientid"] for c in config["clients"]}
    assert pinned == {
        "admin": "dovecote-admin",
        "observer": "dovecote-observer",
        "operator": "dovecote-operator",
        "gateway-1": "dovecote-gateway-1",
        "gateway-2": "dovecote-gateway-2",
        "resizer-1": "dovecote-resizer-1",
    }
    assert config["defaultACLAccess"]["publishClientReceive"] is False
    env = (env_dir / "gateway-2.env").read_text()
    assert "MQTT_URL=mqtts://gateway-2:" in env and "MQTT_CLIENT_ID=dovecote-gateway-2" in env
    assert all(f.stat().st_mode & 0o077 == 0 for f in [target, *env_dir.iterdir()])
    again = subprocess.run(
        [sys.executable, "-m", "dovecote.tools.cli", *args], cwd=PROJECT, capture_output=True
    )
    assert again.returncode == 1 and b"exists" in again.stderr  # never overwritten unasked
    bad = subprocess.run(
        [sys.executable, "-m", "dovecote.tools.cli", *args[:-2], "--workers", "nosuch"],
        cwd=PROJECT,
        capture_output=True,
    )
    assert bad.returncode == 2 and b"unknown service" in bad.stderr


def test_the_production_config_has_no_plaintext_listener() -> None:
    """Every listener of production.conf has a certificate: TLS, or nothing."""
    text = (PROJECT / "deploy" / "mosquitto" / "production.conf").read_text()
    blocks = re.split(r"^listener ", text, flags=re.MULTILINE)[1:]
    assert len(blocks) == 2
    assert all("certfile " in block and "keyfile " in block for block in blocks)
    rabbit = (PROJECT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert re.search(r"^mqtt\.listeners\.tcp\s*=\s*none$", rabbit, re.MULTILINE)
    assert re.search(r"^mqtt\.listeners\.ssl\.default\s*=", rabbit, re.MULTILINE)
    assert re.search(r"^web_mqtt\.ssl\.port\s*=", rabbit, re.MULTILINE)


# paho drops the socket of a TLS handshake that failed without closing it (collected at
# once, but with a ResourceWarning): the refusal is what this test is about.
@pytest.mark.real_broker  # the secured fixture: a private broker of its own
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_tls_verifies_the_broker_certificate(
    secured: Secured, caplog: pytest.LogCaptureFixture
) -> None:
    """mqtts:// with MQTT_CA_FILE connects; without it (the system's CAs do not know ours)
    the certificate is refused and nothing connects."""
    trusted = secured.connection("observer")
    trusted.start()
    await trusted.wait_connected(10)
    await trusted.stop()
    settings = Settings.from_env({"MQTT_URL": secured.url("observer")})
    assert settings.broker.tls and settings.broker.ca_file is None
    untrusted = Connection(
        settings.broker,
        secured.logins["observer"].client_id,
        on_message=lambda m: None,
        clean_session=True,
        manual_ack=False,
    )
    untrusted.start()
    with pytest.raises(TimeoutError):
        await untrusted.wait_connected(2)
    await untrusted.stop(1)
    gc.collect()  # the dropped sockets' warnings, here rather than in another test
    assert "certificate verify failed" in caplog.text  # why: not a broker that is away
    with pytest.raises(ConfigError, match="MQTT_CA_FILE"):
        Settings.from_env({"MQTT_URL": secured.url("observer"), "MQTT_CA_FILE": "/nonexistent"})


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
    # A variable set per worker (DOVECOTE_INSTANCE) is listed commented out: set in the
    # shared file it would override every unit's own.
    listed = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
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
    others = [p.name for p in manifest.load().participants]  # services in other languages
    env |= {f"DOVECOTE_PW_{u.upper()}": f"pw-{u}" for u in (*USERS, *others)}
    done = subprocess.run(
        ["sh", str(acl.RABBITMQ_PERMISSIONS)], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return lambda user: f"mqtt://dovecote%3A{user}:pw-{user}@{b.host}:{b.port}"


@pytest.mark.slow
@pytest.mark.brokers("rabbitmq")
@pytest.mark.timeout(240)  # a federation and ~100 logins' connections: 67 s alone at load 10
async def test_the_whole_federation_works_on_the_rabbitmq_permissions_and_no_one_can_forge(
    broker: TestBroker, tmp_path: Path
) -> None:
    """The same federation on RabbitMQ, with the generated permissions script's users.

    RabbitMQ closes a connection that publishes where it may not write: each forgery goes
    on its own connection, which must be closed by the broker, its message seen by no one.
    """
    assert isinstance(broker, PrivateRabbitMQ)
    manifest.load()
    url_for = rabbitmq_users(broker, tmp_path)
    watch_id = f"{ROOT}-observer-tail-{uuid.uuid4().hex[:8]}"  # a tool's id: the observer's
    observer = await Probe(url_for(acl.OBSERVER), ROOT, client_id=watch_id).start()
    env = federation_env(tmp_path, free_port())
    amqp_for: UrlFor = lambda user: (  # noqa: E731
        f"amqp://{user}:pw-{user}@{broker.host}:{broker.amqp_port}/dovecote"
    )
    procs = await start_federation(env, url_for, tmp_path, amqp_for)

    def connect_as(who: str) -> Connection:
        return Connection(
            parse_mqtt_url(url_for(who)),
            f"{ROOT}-{who}-test",
            on_message=lambda m: None,
            clean_session=True,
            manual_ack=False,
        )

    try:
        await end_to_end(observer, env, connect_as, env | {"MQTT_URL": url_for(acl.OPERATOR)})
        for p in procs:  # every pool read its own queue, on its own user's permissions
            if p.name != "gateway":
                assert "from its queue dovecote-pool.dovecote." in p.log, p.log[-2000:]
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

        # Session takeover: points stopped, 5 uploads wait in its session queue; every
        # user connects with every service worker's client id, resumes that session and
        # subscribes to the uploads. RabbitMQ lets the CONNECT through (and disconnects the
        # id's holder: it cannot bind an id to a user), but no user may use another's
        # session queue: nothing is delivered, and points, back, awards all 5.
        points = next(p for p in procs if p.name == "points")
        assert await asyncio.to_thread(points.stop) == 0
        await observer.wait_for("services/points/1", lambda a: a["type"] == "Leave")
        gateway = connect_as("gateway")
        gateway.start()
        await gateway.wait_connected(10)
        events = uploads(env, 5)
        for event in events:
            gateway.publish(f"{ROOT}/events/image/created", act.encode(event))
        assert await gateway.flush(10)
        await gateway.stop()
        taken, accepted, fights = 0, 0, 0
        for user in USERS:
            for victim in SERVICES:
                if victim == user:
                    continue
                code, got = await asyncio.to_thread(
                    resume_and_take, broker.host, broker.port, f"{ROOT}-{victim}-1", url_for(user)
                )
                accepted += code == 0
                taken += got
                fights += 1
        # The observer and the operator (people at the tools) hold sessions of their own
        # too: each with replies queued in it (a topic both may read), the other logs in
        # with its id, resumes it and takes nothing; its owner, back, finds every one
        # (issue 21: the two shared one queue-name pattern).
        replies = "replies/gateway/takeover"
        for owner, thief in ((acl.OBSERVER, acl.OPERATOR), (acl.OPERATOR, acl.OBSERVER)):
            own_id = f"{ROOT}-{owner}-tail-{uuid.uuid4().hex[:8]}"
            made = await asyncio.to_thread(
                resume_and_take, broker.host, broker.port, own_id, url_for(owner), replies
            )
            assert made == (0, 0), f"{owner} could not make its own session: {made}"
            gateway = connect_as("gateway")
            gateway.start()
            await gateway.wait_connected(10)
            for n in range(3):
                gateway.publish(f"{ROOT}/{replies}", b'{"n": %d}' % n)
            assert await gateway.flush(10)
            await gateway.stop()
            code, got = await asyncio.to_thread(
                resume_and_take, broker.host, broker.port, own_id, url_for(thief), replies
            )
            accepted += code == 0
            taken += got
            fights += 1
            assert got == 0, f"{thief} took {got} message(s) from {owner}'s session"
            kept = await asyncio.to_thread(
                resume_and_take, broker.host, broker.port, own_id, url_for(owner), replies
            )
            assert kept == (0, 3), f"{owner}'s own session after {thief}'s try: {kept}"
        print(f"RabbitMQ: {fights} takeover attempts, {accepted} CONNACKs accepted, {taken} taken")
        assert taken == 0, f"{taken} message(s) delivered to a login that took another's id"
        procs.append(ServiceProcess("points", points.env, tmp_path).start())
        await session_row(observer, events, f"{fights} logins take others' client ids (RabbitMQ)")
    finally:
        stop_federation(procs)
        await observer.stop()


def resume_and_take(
    host: str, port: int, client_id: str, url: str, topic: str = "events/image/created"
) -> tuple[int, int]:
    """Connect as ``url``'s user with ``client_id``, resume its session, subscribe to
    ``topic`` (the uploads) and take what comes for 0.5 s. (CONNACK code, messages taken);
    -1: the connection was closed before a CONNACK."""
    address = parse_mqtt_url(url)
    assert address.username and address.password
    with socket.create_connection((host, port), 5) as sock:
        sock.sendall(connect_packet(client_id, address.username, address.password, False))
        reply = sock.recv(4)
        if len(reply) < 4:
            return -1, 0
        if reply[3] != 0:
            return reply[3], 0
        wanted = f"{ROOT}/{topic}".encode()
        body = (1).to_bytes(2, "big") + len(wanted).to_bytes(2, "big") + wanted + b"\x01"
        sock.sendall(bytes([0x82, len(body)]) + body)
        sock.settimeout(0.5)
        taken, data = 0, b""
        with contextlib.suppress(OSError):  # a timeout, or the broker closing it
            while chunk := sock.recv(65536):
                data += chunk
        i = 0
        while i + 1 < len(data):  # count the PUBLISH packets (fixed header 0x3_)
            size, shift, j = 0, 0, i + 1
            while True:
                size |= (data[j] & 0x7F) << shift
                shift += 7
                j += 1
                if not data[j - 1] & 0x80:
                    break
            taken += data[i] >> 4 == 3
            i = j + size
        return 0, taken
