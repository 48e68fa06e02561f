"""`dovecote run`: the supervisor as users start it, on a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import websockets

from dovecote.tools import broker as broker_tools
from dovecote.tools import run_secrets
from dovecote.tools.broker import PrivateMosquitto, choose, free_port, mqtt_answers
from dovecote_testing.gateway import cookie_header, signed_in
from dovecote_testing.plugin import Probe, TestBroker, wait_until


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
    # As `make run` on a fresh checkout: no secrets set, none kept yet (nor the hash of a
    # demo password the tests give their gateways: the run makes the password).
    made = {*run_secrets.MAKERS, "DEMO_PASSWORD_HASH"}
    env = {k: v for k, v in service_env.items() if k not in made}
    sup = dovecote(["run", "builder", "gateway"], env, log)
    try:
        joins = await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join")
        gateway = await probe.wait_for("services/gateway/1", lambda a: a["type"] == "Join")
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
        # How to sign in, printed at start: the demo people's new password works.
        said = re.search(r"sign in: +(\S+)/signin as ada or grace .*password (\S+)", text)
        assert said and said[1] == url, text
        kept = Path(env["DOVECOTE_DATA_DIR"]) / run_secrets.FILE_NAME
        assert f"made {', '.join(run_secrets.MAKERS)}; kept in {kept} (0600)" in text
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        http = await signed_in(url, "grace", said[2])
        async with http:
            async with http.get(f"{url}/") as r:
                assert 'data-user="grace"' in await r.text()
            # kill -9 a worker: the supervisor says so and starts a shiny new one.
            os.kill(joins[0]["object"]["pid"], signal.SIGKILL)
            await probe.wait_for("services/builder/1", lambda a: a["type"] == "Leave", timeout=60)
            killed = joins[0]["object"]["pid"]
            # A new process: on RabbitMQ the same worker also re-announces itself (a second
            # Join with the old pid) when the gateway asks who is online.
            await probe.wait_for(
                "services/builder/1",
                lambda a: a["type"] == "Join" and a["object"]["pid"] != killed,
            )
            assert "died with exit code -9" in log.read_text()
            sup.send_signal(signal.SIGTERM)  # what systemd and `kill` send (Ctrl-C: SIGINT)
            assert await asyncio.to_thread(sup.wait, 30) == 0
            leaves = [m.topic for m in probe.messages if b'"Leave"' in m.payload]
            # The gateway stops first, then the builder.
            assert leaves[-2:] == [
                f"{probe.root}/services/gateway/1",
                f"{probe.root}/services/builder/1",
            ]
            # Restarted, as a developer does to see a change: the same secrets, so the
            # browser that signed in before is still signed in.
            again = tmp_path / "again.log"
            sup = dovecote(["run", "gateway"], env, again)
            before = gateway[0]["object"]["pid"]
            await probe.wait_for(
                "services/gateway/1",
                lambda a: a["type"] == "Join" and a["object"]["pid"] != before,
            )
            assert f"password {said[2]}" in again.read_text()
            assert "reused DOVECOTE_SERVICE_TOKEN, DOVECOTE_SESSION_KEY" in again.read_text()
            async with http.get(f"{url}/") as r:
                assert 'data-user="grace"' in await r.text()
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()


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


@pytest.mark.brokers("mosquitto")  # refused before any broker is reached
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


@pytest.mark.real_broker  # starts a private broker of its own
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


@pytest.mark.real_broker  # starts a private broker of its own
def test_a_private_broker_on_a_chosen_port_even_with_one_answering(
    broker: TestBroker, tmp_path: Path
) -> None:
    port = free_port()
    env = {"MQTT_URL": broker.url}
    choice = choose(env, tmp_path / "broker", local_port=broker.port, private_port=port)
    try:
        assert choice.private is not None and choice.url == f"mqtt://127.0.0.1:{port}"
        assert mqtt_answers("127.0.0.1", port)
        # That port again, now taken: refused, saying how to choose another.
        with pytest.raises(broker_tools.BrokerUnavailable, match=f"port {port} is taken"):
            choose({}, tmp_path / "second", private_port=port)
    finally:
        if choice.private:
            choice.private.stop()
    assert not mqtt_answers("127.0.0.1", port)


@pytest.mark.brokers("mosquitto")  # refused before any broker is reached
def test_a_private_broker_port_that_is_no_port_is_refused(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    for env, message in (
        ({"PRIVATE_BROKER_PORT": "eighteen"}, "PRIVATE_BROKER_PORT must be a port number"),
        ({"PRIVATE_BROKER_PORT": "70000"}, "no port 70000"),
    ):
        sup = dovecote(["run", "builder"], {**service_env, **env}, tmp_path / "x.log")
        assert sup.wait(20) == 2
        assert message in (tmp_path / "x.log").read_text()


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


# --- nothing outlives `dovecote run` -------------------------------------------------------


def processes_of(root: str) -> list[int]:
    """Every live process started with this test's own DOVECOTE_ROOT: the supervisor and
    whatever it started, wherever they were re-parented."""
    mark = f"DOVECOTE_ROOT={root}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or a zombie (no environ left)
            continue
    return found


async def all_online(probe: Probe, *services: str) -> dict[str, int]:
    """Wait for each worker's Join; its pid."""
    pids = {}
    for service in services:
        join = await probe.wait_for(f"services/{service}/1", lambda a: a["type"] == "Join")
        pids[service] = join[-1]["object"]["pid"]
    return pids


async def nothing_left(root: str, within: float) -> None:
    await wait_until(lambda: not processes_of(root), within, f"every process of {root} gone")


def reap(root: str) -> None:
    """After a failed test: nothing of it may keep running."""
    for pid in processes_of(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.brokers("mosquitto")  # the broker plays no part in who outlives whom
async def test_kill_9_of_the_supervisor_leaves_no_worker_after_2_s(
    service_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    root = service_env["DOVECOTE_ROOT"]
    sup = dovecote(["run", "builder", "notifier", "gateway"], service_env, tmp_path / "run.log")
    try:
        pids = await all_online(probe, "builder", "notifier", "gateway")
        assert sorted(processes_of(root)) == sorted([sup.pid, *pids.values()])
        sup.kill()
        sup.wait()
        killed = time.monotonic()
        await nothing_left(root, 2.0)
        assert time.monotonic() - killed < 2.0
        # They stopped, not vanished: each said goodbye (its Leave), no Last Will needed.
        for service in pids:
            await probe.wait_for(f"services/{service}/1", lambda a: a["type"] == "Leave", 5)
    finally:
        if sup.poll() is None:
            sup.kill()
        reap(root)


@pytest.mark.brokers("mosquitto")
async def test_a_stop_interrupted_by_kill_9_still_leaves_nothing_running(
    service_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    """The gateway stops first, the rest after it: killed in between, the supervisor never
    signals the rest. They stop all the same."""
    root = service_env["DOVECOTE_ROOT"]
    sup = dovecote(["run", "builder", "points", "gateway"], service_env, tmp_path / "run.log")
    gateway = 0
    try:
        gateway = (await all_online(probe, "builder", "points", "gateway"))["gateway"]
        os.kill(gateway, signal.SIGSTOP)  # a gateway slow to stop: the stop waits for it
        sup.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert not [m for m in probe.messages if b'"Leave"' in m.payload], "nothing stopped yet"
        sup.kill()
        sup.wait()
        os.kill(gateway, signal.SIGCONT)
        await nothing_left(root, 2.0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(gateway, signal.SIGCONT)
        if sup.poll() is None:
            sup.kill()
        reap(root)


@pytest.mark.brokers("mosquitto")
async def test_a_second_ctrl_c_during_a_stop_kills_what_is_left_at_once(
    service_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    root = service_env["DOVECOTE_ROOT"]
    log = tmp_path / "run.log"
    sup = dovecote(["run", "builder", "gateway"], service_env, log)
    try:
        gateway = (await all_online(probe, "builder", "gateway"))["gateway"]
        os.kill(gateway, signal.SIGSTOP)  # the stop would wait for it (10 s, then kill)
        sup.send_signal(signal.SIGINT)
        await asyncio.sleep(0.5)
        sup.send_signal(signal.SIGINT)  # the person will not wait
        second = time.monotonic()
        await asyncio.to_thread(sup.wait, 10)
        # Waiting for the stopped gateway would take 10 s; killing it, well under 1 s on an
        # idle machine (1.1 s was seen at load 7): 5 s tells the two apart on a busy one too.
        assert time.monotonic() - second < 5.0, "killed, not waited for"
        assert processes_of(root) == []
        assert "stopping now: killing 2 worker(s)" in log.read_text()
    finally:
        if sup.poll() is None:
            sup.kill()
        reap(root)


@pytest.mark.brokers("mosquitto")
async def test_ctrl_c_mid_start_stops_everything(
    service_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    root = service_env["DOVECOTE_ROOT"]
    services = ["builder", "notifier", "points", "resizer", "gateway"]
    sup = dovecote(["run", *services], service_env, tmp_path / "run.log")
    try:
        # Interrupted as soon as its first worker exists: the others are being started.
        await wait_until(lambda: len(processes_of(root)) >= 2, 20, "a first worker")
        sup.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(sup.wait, 30) == 0
        assert processes_of(root) == [], "the supervisor waited for every worker it started"
        await asyncio.sleep(1.0)
        assert processes_of(root) == [], "and none was started after"
        online = {m.topic.split("/")[-2] for m in probe.messages if b'"Join"' in m.payload}
        assert len(online) < len(services), "it was interrupted mid-start, not after"
    finally:
        if sup.poll() is None:
            sup.kill()
        reap(root)


@pytest.mark.brokers("mosquitto")
async def test_a_second_run_in_the_same_folder_refuses_and_says_what_runs(
    service_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    first = dovecote(["run", "builder"], service_env, tmp_path / "first.log")
    try:
        pid = (await all_online(probe, "builder"))["builder"]
        second = dovecote(["run", "builder", "gateway"], service_env, tmp_path / "second.log")
        assert await asyncio.to_thread(second.wait, 30) == 1
        said = (tmp_path / "second.log").read_text()
        data = service_env["DOVECOTE_DATA_DIR"]
        assert f"a federation is already running from this folder (data in {data})" in said
        assert f"pid {first.pid}  (dovecote run builder)" in said
        assert f"builder.1     pid {pid}" in said
        assert f"Stop it with Ctrl-C in its terminal, or: kill {first.pid}" in said
        assert "broker:" not in said, "refused before anything else was started"
        # The first generation is untouched: one builder, still the same process.
        await asyncio.sleep(0.5)
        joins = [m for m in probe.messages if b'"Join"' in m.payload]
        assert len(joins) == 1 and first.poll() is None
        first.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(first.wait, 30) == 0
        # Stopped: the folder is free again.
        again = dovecote(["run", "builder"], service_env, tmp_path / "again.log")
        try:
            await probe.wait_for("services/builder/1", lambda a: a["type"] == "Join", count=2)
        finally:
            again.send_signal(signal.SIGINT)
            assert await asyncio.to_thread(again.wait, 30) == 0
    finally:
        if first.poll() is None:
            first.kill()
        reap(service_env["DOVECOTE_ROOT"])


def test_the_lock_names_workers_left_behind_by_a_dead_supervisor(tmp_path: Path) -> None:
    """A worker still stopping after its supervisor died holds the lock (it inherited it)."""
    from dovecote.tools import runlock

    held = runlock.RunLock(tmp_path)
    fd = held.acquire(["dovecote", "run", "builder"])
    worker = subprocess.Popen(["sleep", "30"], pass_fds=(fd,))
    try:
        held.record({"builder.1": worker.pid})
        held.info["supervisor"] = 2**22 + 1  # above pid_max's default: a dead supervisor
        held.record({"builder.1": worker.pid})
        held.release()  # the supervisor's own copy is gone; the worker's holds the lock
        with pytest.raises(runlock.AlreadyRunning) as refused:
            runlock.RunLock(tmp_path).acquire(["dovecote", "run"])
        text = str(refused.value)
        assert f"its `dovecote run` (pid {2**22 + 1}) is gone" in text
        assert f"builder.1     pid {worker.pid}" in text
        assert f"stop them: kill {worker.pid}" in text
    finally:
        worker.kill()
        worker.wait()
    runlock.RunLock(tmp_path).acquire(["dovecote", "run"])  # the last holder gone: free


@pytest.mark.real_broker  # starts a private broker of its own
def test_ctrl_c_while_a_private_mosquitto_starts_leaves_no_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: object) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(broker_tools, "mqtt_answers", interrupted)
    mosquitto = PrivateMosquitto(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        mosquitto.start()
    assert mosquitto.process is not None and mosquitto.process.poll() is not None


@pytest.mark.real_broker  # starts a private broker of its own
def test_the_run_s_private_mosquitto_dies_with_the_supervisor(tmp_path: Path) -> None:
    """``dovecote run``'s own broker cannot watch a pipe: the kernel stops it (Linux)."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from dovecote.tools.broker import PrivateMosquitto\n"
        "b = PrivateMosquitto(Path(sys.argv[1]), die_with_parent=True).start()\n"
        "print(b.process.pid, b.port, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    pid, port = map(int, parent.stdout.readline().split())
    assert mqtt_answers("127.0.0.1", port)
    parent.kill()
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while not exited(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert exited(pid)
    assert not mqtt_answers("127.0.0.1", port)


def exited(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.brokers("mosquitto")
async def test_a_service_with_a_bogus_supervisor_pipe_refuses_to_start(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**service_env, "DOVECOTE_SUPERVISOR_FD": "97"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.builder", env=env, stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "DOVECOTE_SUPERVISOR_FD='97' is not an open pipe" in err.decode()
