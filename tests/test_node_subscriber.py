"""A service in another language: the Node.js captioner (examples/node-captioner) beside the
Python pipeline, on each broker; and on Mosquitto's generated roles, confined to its topics.

Its contract is Python (services/captioner/topics.py); it validates with the committed
docs/schemas. What it publishes must decode with the Python payload type, reach the
dashboard's live feed, and, made wrong on purpose, be parked with the reason by the Python
subscriber of its topic (the gateway, which forwards ``events/#``), never shown.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets

from dovecote import activity as act
from dovecote import topics
from dovecote.config import parse_mqtt_url
from dovecote.mqtt import Connection
from dovecote.project import PROJECT
from dovecote.tools import logins, logins_command, manifest, units
from dovecote.tools.broker import PrivateMosquitto, free_port
from dovecote_testing.gateway import cookie_header
from dovecote_testing.plugin import Probe
from services.captioner.topics import IMAGE_CAPTIONED, ImageCaptioned
from services.gateway.topics import IMAGE_CREATED
from tests import imagefiles
from tests.fixtures import Pipeline
from tests.test_deploy import Certs, certs, production_config  # noqa: F401 (a fixture)
from tests.test_gateway_process import Browserish
from tests.test_pipeline_process import upload

pytestmark = pytest.mark.slow

FOLDER = PROJECT / "examples" / "node-captioner"
NODE = shutil.which("node") or "/usr/bin/node"


class NodeService:
    """The captioner as a real process (``node captioner.mjs``), its output in a log file."""

    def __init__(
        self, env: dict[str, str], log: Path, argv: list[str] | None = None, cwd: Path = PROJECT
    ) -> None:
        if not (FOLDER / "node_modules" / "mqtt").is_dir():
            pytest.fail(f"{FOLDER}/node_modules is missing: make test installs it (npm ci)")
        self.log_path = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                argv or [NODE, str(FOLDER / "captioner.mjs")],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


StartNode = Callable[..., NodeService]


@pytest.fixture
def start_node(service_env: dict[str, str], tmp_path: Path) -> Iterator[StartNode]:
    started: list[NodeService] = []

    def start(env: dict[str, str] | None = None, **more: str) -> NodeService:
        n = len(started) + 1
        node = NodeService({**(env or service_env), **more}, tmp_path / f"captioner.{n}.log")
        started.append(node)
        return node

    yield start
    for node in started:
        code = node.stop()
        print(f"--- captioner (exit code {code}):\n{node.log[-4000:]}")


@pytest.fixture
async def feed(pipeline: Pipeline) -> AsyncIterator[Browserish]:
    """Ada's dashboard socket: the live feed as a browser gets it."""
    async with await pipeline.signed_in("ada") as http:
        cookie = {"Cookie": cookie_header(http)}
    ws = pipeline.url.replace("http://", "ws://") + "/ws"
    async with websockets.connect(ws, additional_headers=cookie) as conn:
        browser = Browserish(conn)
        await browser.wait(lambda f: f.get("type") == "hello")
        yield browser


def raw(probe: Probe, rel_topic: str) -> list[bytes]:
    return [m.payload for m in probe.messages if m.topic == f"{probe.root}/{rel_topic}"]


def about(image_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda a: bool(a["object"].get("inReplyTo") == image_id)


async def test_a_node_service_captions_uploads_its_events_decode_in_python_and_reach_the_feed(
    pipeline: Pipeline, feed: Browserish, start_node: StartNode
) -> None:
    p, probe = pipeline, pipeline.probe
    captioner = start_node()
    [join] = await probe.wait_for("services/captioner/1", lambda a: a["type"] == "Join")
    presence = topics.PRESENCE.codec.decode(raw(probe, "services/captioner/1")[0])
    assert (presence.object.name, presence.object.status) == ("captioner", "online")
    assert presence.object.pid == captioner.process.pid

    status, body = await upload(p, imagefiles.photo(640, 480), title="Ada’s cat")
    assert status == 201, body
    up = orjson.loads(body)
    [created] = await probe.wait_for("events/image/created", lambda a: a["id"] == up["activity"])
    [event] = await probe.wait_for("events/image/captioned", about(created["object"]["id"]))

    # The Python payload type, the runtime's validator, takes the Node service's bytes.
    caption = IMAGE_CAPTIONED.codec.decode(raw(probe, "events/image/captioned")[0])
    assert isinstance(caption, ImageCaptioned)
    assert caption.context == up["context"]
    assert caption.actor.id == "urn:dovecote:service:captioner"
    assert caption.id == act.derived_id(created["id"], "captioned")  # as Python derives one
    who = created["actor"]["name"]
    assert caption.object.content == f"“Ada’s cat” (a landscape JPEG, 640×480), shared by {who}"
    assert caption.summary == caption.object.content

    # The gateway forwarded it, unchanged, to the dashboard's live feed.
    frame = await feed.wait(lambda f: f.get("topic") == f"{probe.root}/events/image/captioned")
    assert frame["activity"] == event

    # A redelivered upload makes the same caption (subscribers skip the repeat); garbage and
    # a payload its schema refuses are logged and skipped, and the service goes on.
    probe.publish("events/image/created", b"{not json")
    probe.publish("events/image/created", act.new("Create", created["actor"], {"type": "Image"}))
    probe.publish("events/image/created", raw(probe, "events/image/created")[0])
    again = await probe.wait_for("events/image/captioned", about(created["object"]["id"]), count=2)
    assert [a["id"] for a in again] == [caption.id, caption.id]
    assert captioner.process.poll() is None
    log = captioner.log
    assert f"invalid payload on {probe.root}/events/image/created, skipped: not JSON" in log
    assert "$.object: must have required property 'id'" in log
    # The Python side parked the garbage; of the captions, it refused none.
    parked = [letter["object"]["name"] for letter in probe.on("deadletter/gateway")]
    assert parked and not [t for t in parked if t.endswith("/image/captioned")]

    # Asked who is online, it says so again; stopped, it leaves (retained, as its will would).
    probe.publish(topics.PRESENCE_QUERY.pattern, act.new("Question", join["actor"], {}))
    await probe.wait_for("services/captioner/1", lambda a: a["type"] == "Join", count=2)
    assert await asyncio.to_thread(captioner.stop) == 0
    [leave] = await probe.wait_for("services/captioner/1", lambda a: a["type"] == "Leave")
    assert leave["object"]["status"] == "offline"


async def test_a_wrong_event_from_node_is_parked_with_the_reason_not_shown(
    pipeline: Pipeline, feed: Browserish, start_node: StartNode
) -> None:
    p, probe = pipeline, pipeline.probe
    captioner = start_node(CAPTIONER_BREAK="1")  # it leaves out object.inReplyTo, on purpose
    await probe.wait_online("captioner")
    status, body = await upload(p, imagefiles.photo(seed=3), title="broken")
    assert status == 201, body
    up = orjson.loads(body)
    [bad] = await probe.wait_for("events/image/captioned", lambda a: a["context"] == up["context"])
    assert "inReplyTo" not in bad["object"]
    why = "$.object: must have required property 'inReplyTo'"  # its own check, overridden
    assert f"sending an invalid caption on purpose ({why})" in captioner.log

    # The gateway, the Python subscriber of events/#, decodes it with the registry's type.
    [letter] = await probe.wait_for(
        "deadletter/gateway", lambda a: a["object"]["name"].endswith("/events/image/captioned")
    )
    assert "inReplyTo" in letter["summary"], letter["summary"]
    assert json.loads(letter["object"]["content"])["id"] == bad["id"]
    # Parked, so never shown: an upload made after it reaches the page, and the caption not.
    status, body = await upload(p, imagefiles.photo(seed=4), title="after")
    assert status == 201, body
    later = orjson.loads(body)["activity"]
    await feed.wait(lambda f: f.get("activity", {}).get("id") == later)
    assert not [f for f in feed.decoded() if f.get("topic", "").endswith("/image/captioned")]


# --- its login on Mosquitto's generated roles ----------------------------------------------

ROOT = "dovecote"  # the committed roles are written for the default root


@pytest.mark.real_broker  # a private broker of its own, on production.conf
async def test_its_login_is_confined_to_its_own_topics(
    certs: Certs,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """The roles `make docs` generates from the manifest: the captioner's worker 2, started
    as its systemd unit starts it, connects with its own login and works; with a login of
    its service nothing else may be published, and nothing but what it reads subscribed to."""
    assert manifest.load().participant("captioner") is not None
    every = logins.standing_logins(ROOT, {"captioner": 2, "gateway": 1})
    by_name = {login.username: login for login in every}
    (tmp_path / "dynamic-security.json").write_text(json.dumps(logins.dynsec_config(ROOT, every)))
    port = free_port()
    config = production_config(tmp_path, port, free_port(), certs)
    broker = PrivateMosquitto(
        tmp_path, port=port, config_text=config, ca_file=str(certs.ca)
    ).start()

    def url(who: str) -> str:
        return by_name[who].url("mqtts", broker.host, broker.port)

    ca = str(certs.ca)
    observer = Probe(url("observer"), ROOT, client_id=by_name["observer"].client_id, ca_file=ca)
    await observer.start()
    node = None
    try:
        # Started as its systemd unit starts it: its ExecStart, in its WorkingDirectory, with
        # systemd's PATH and nothing but the unit's environment: dovecote.env's settings, its
        # login's file as `dovecote logins init` writes it, and DOVECOTE_INSTANCE=%i.
        unit = unit_settings(units.path_of("captioner"), instance="2")
        env = {"PATH": systemd_path(), "DOVECOTE_ROOT": ROOT, "MQTT_CA_FILE": ca}
        login_env = logins_command.worker_env(by_name["captioner-2"], url("captioner-2"))
        env |= dict(line.split("=", 1) for line in login_env.splitlines())
        env |= dict(line.split("=", 1) for line in unit["Environment"])
        [argv], [folder] = unit["ExecStart"], unit["WorkingDirectory"]
        cwd = Path(folder.replace(units.INSTALLED, str(PROJECT), 1))
        node = NodeService(env, tmp_path / "captioner.log", shlex.split(argv), cwd)
        await observer.wait_online("captioner", "2", timeout=20)
        upload_event = act.new(
            "Create",
            {"type": "Person", "id": "http://localhost/users/ada", "name": "Ada"},
            {"type": "Image", "id": "http://localhost/images/1", "url": "http://localhost/i/1"}
            | {"name": "x", "mediaType": "image/png", "width": 9, "height": 9, "size": 9},
            context="urn:uuid:7d4a0fd4-30b1-4a4c-9a4c-1b7f1e0f7a01",
        )
        gateway = await connected(url("gateway-1"), by_name["gateway-1"].client_id, ca)
        gateway.publish(IMAGE_CREATED.address(ROOT), act.encode(upload_event), 1, False)
        await observer.wait_for("events/image/captioned", about("http://localhost/images/1"))
        await gateway.stop()

        # Its first worker's login: every topic of the registry it does not publish.
        own = set(logins.writable("captioner", ROOT))
        conn = await connected(url("captioner-1"), by_name["captioner-1"].client_id, ca)
        forged = []
        for t in topics.all_topics():
            address = t.address(ROOT, **dict.fromkeys(t.params, "forged"))
            if t.publisher in ("captioner", "*") and "service" not in t.params:
                continue  # its own, or everyone's (the presence query, the probe)
            forged.append(address)
            conn.publish(address, b'{"forged by": "captioner"}', 1, False)
        mine = IMAGE_CAPTIONED.address(ROOT)
        conn.publish(mine, b'{"control": "captioner"}', 1, False)  # its own: delivered
        await observer.wait_for("events/image/captioned", lambda a: "control" in a)
        assert len(forged) > 20 and not any(f in own for f in forged)
        leaked = [m.topic for m in observer.messages if b"forged by" in m.payload]
        assert leaked == []

        # It may read the uploads and the presence query, and nothing else.
        for f, allowed in (
            (IMAGE_CREATED.filter(ROOT), True),
            (topics.PRESENCE_QUERY.filter(ROOT), True),
            (f"{ROOT}/users/+/notifications", False),
            (f"{ROOT}/events/#", False),
            (f"{ROOT}/#", False),
        ):
            granted = conn.subscribe(f, 1)
            assert granted is not None
            [code] = await asyncio.wait_for(granted, 10)
            assert (code < 0x80) == allowed, f"subscribing {f}: {code:#x}"
        await conn.stop()
    finally:
        if node is not None:
            print(f"--- captioner (exit code {node.stop()}):\n{node.log[-4000:]}")
        await observer.stop()
        broker.stop()


def unit_settings(path: Path, instance: str) -> dict[str, list[str]]:
    """A template unit's settings, as instance ``instance`` of it has them (``%i``)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        key, eq, value = line.partition("=")
        if eq and not line.startswith("#"):
            out.setdefault(key, []).append(value.replace("%i", instance))
    return out


def systemd_path() -> str:
    """The PATH systemd gives a service (systemd.exec(5)); where node is elsewhere, the
    deployer's ``PATH=`` in /etc/dovecote/captioner.env adds its folder, and so do we."""
    default = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return default if shutil.which("node", path=default) else f"{Path(NODE).parent}:{default}"


async def connected(url: str, client_id: str, ca: str) -> Connection:
    conn = Connection(
        parse_mqtt_url(url, ca),
        client_id,
        on_message=lambda m: None,
        clean_session=True,
        manual_ack=False,
    )
    conn.start()
    await conn.wait_connected(10)
    return conn
