"""`dovecote run`: the supervisor as users start it, on a real broker."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import websockets

from dovecote.testing.gateway import cookie_header, signed_in
from dovecote.testing.plugin import Probe, TestBroker, wait_until
from dovecote.tools.broker import choose, free_port, mqtt_answers


def dovecote(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dovecote.tools.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_run_starts_prefixes_restarts_and_stops_in_order(
    service_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    # As `make run` on a fresh checkout: no session key, no demo password set.
    env = {
        k: v for k, v in service_env.items() if k not in ("DOVECOTE_SESSION_KEY", "DEMO_PASSWORD")
    }
    sup = dovecote(["run", "builder", "gateway"], env, log)
    try:
        joins = await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
        await probe.wait_for("services/gateway/1", lambda a: a["type"] == "Join")
        # The workers' lines pass through the supervisor's pipes: allow them a moment.
        await wait_until(
            lambda: "builder.1  | " in log.read_text() and "gateway.1  | " in log.read_text(),
            10,
            "both workers' prefixed lines",
        )
        text = log.read_text()
        assert "broker: the broker at MQTT_URL (mqtt://127.0.0.1:" in text
        url = service_env["PUBLIC_URL"]
        assert f"dashboard:      {url}/" in text
        # How to sign in, printed at start: the demo people's fresh password works.
        said = re.search(r"sign in: +(\S+)/signin as ada or grace .*password (\S+)", text)
        assert said and said[1] == url, text
        async with await signed_in(url, "grace", said[2]) as http, http.get(f"{url}/") as r:
            assert 'data-user="grace"' in await r.text()
        assert "session key:    a fresh DOVECOTE_SESSION_KEY" in text
        # kill -9 a worker: the supervisor says so and starts a shiny new one.
        os.kill(joins[0]["object"]["pid"], signal.SIGKILL)
        await probe.wait_for("services/builder/1", lambda a: a["type"] == "Leave", timeout=60)
        killed = joins[0]["object"]["pid"]
        # A new process: on RabbitMQ the same worker also re-announces itself (a second Join
        # with the old pid) when the gateway asks who is online.
        await probe.wait_for(
            "services/builder/1", lambda a: a["type"] == "Join" and a["object"]["pid"] != killed
        )
        assert "died with exit code -9" in log.read_text()
        sup.send_signal(signal.SIGTERM)  # what systemd and `kill` send (Ctrl-C: SIGINT, same path)
        assert await asyncio.to_thread(sup.wait, 30) == 0
        leaves = [m.topic for m in probe.messages if b'"Leave"' in m.payload]
        # The gateway stops first, then the builder.
        assert leaves[-2:] == [
            f"{probe.root}/services/gateway/1",
            f"{probe.root}/services/builder/1",
        ]
    finally:
        if sup.poll() is None:
            sup.kill()


@pytest.mark.brokers("mosquitto")  # the port is taken: the broker plays no part
async def test_a_service_that_cannot_start_stops_the_run_with_an_error(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(service_env["PORT"])))
        taken.listen()
        log = tmp_path / "run.log"
        sup = dovecote(["run", "gateway"], service_env, log)
        code = await asyncio.to_thread(sup.wait, 60)
    assert code == 1
    assert "gateway.1 cannot start (died 5 times" in log.read_text()


def test_unknown_services_and_bad_counts_are_refused(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    for args, message in (
        (["run", "teleporter"], "unknown service 'teleporter'"),
        (["run", "builder=0"], "must be 1-64"),
    ):
        sup = dovecote(args, service_env, tmp_path / "x.log")
        assert sup.wait(20) == 2
        assert message in (tmp_path / "x.log").read_text()


def test_with_no_broker_anywhere_a_private_mosquitto_is_started(tmp_path: Path) -> None:
    port = free_port()
    assert not mqtt_answers("localhost", port)
    said: list[str] = []
    choice = choose({}, tmp_path / "broker", said.append, local_port=port)
    try:
        assert choice.private is not None
        assert choice.url == f"mqtt://127.0.0.1:{port}"
        assert "a private Mosquitto on port" in choice.description
        assert mqtt_answers("127.0.0.1", port)
        assert "persistence true" in (tmp_path / "broker" / "mosquitto.conf").read_text()
    finally:
        if choice.private:
            choice.private.stop()
    assert not mqtt_answers("127.0.0.1", port)


def test_a_configured_or_answering_broker_is_used_as_is(broker: TestBroker, tmp_path: Path) -> None:
    assert choose({"MQTT_URL": "mqtt://u:pw@h:1"}, tmp_path).description == (
        "the broker at MQTT_URL (mqtt://u:***@h:1)"
    )
    found = choose({}, tmp_path, local_port=broker.port)
    assert found.private is None and found.url == f"mqtt://localhost:{broker.port}"


async def test_two_gateway_workers_share_one_port_and_every_browser_sees_the_build(
    service_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    sup = dovecote(["run", "builder", "gateway=2"], service_env, log)
    try:
        joins = [
            (await probe.wait_for(f"services/gateway/{n}", lambda a: a["type"] == "Join"))[0]
            for n in ("1", "2")
        ]
        assert joins[0]["object"]["pid"] != joins[1]["object"]["pid"]
        await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
        ws = service_env["PUBLIC_URL"].replace("http://", "ws://") + "/ws"
        # The kernel spreads connections over both listeners (SO_REUSEPORT); whichever
        # worker holds a browser forwards it the whole build. One session cookie is good on
        # both workers (one DOVECOTE_SESSION_KEY, one accounts file).
        async with await signed_in(service_env["PUBLIC_URL"], "ada") as http:
            ada = {"Cookie": cookie_header(http)}
        pages = [await websockets.connect(ws, additional_headers=ada) for _ in range(8)]
        hellos = [orjson.loads(await page.recv()) for page in pages]
        assert {h["user"] for h in hellos} == {"ada"}
        try:
            await pages[0].send(orjson.dumps({"command": "build.start"}).decode())

            async def until_succeeded(page: websockets.ClientConnection) -> None:
                async for frame in page:
                    if b"/events/build/succeeded" in (
                        frame if isinstance(frame, bytes) else frame.encode()
                    ):
                        return

            await asyncio.wait_for(asyncio.gather(*map(until_succeeded, pages)), 30)
        finally:
            for page in pages:
                await page.close()
        assert "gateway.1  | " in log.read_text() and "gateway.2  | " in log.read_text()
        sup.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(sup.wait, 30) == 0
        leaves = [m.topic.rsplit("/", 2)[-2] for m in probe.messages if b'"Leave"' in m.payload]
        assert leaves[-3:] == ["gateway", "gateway", "builder"]  # gateways stop first
    finally:
        if sup.poll() is None:
            sup.kill()
