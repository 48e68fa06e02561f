"""``dovecote tail`` and ``dovecote publish`` as real processes on the private broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from dovecote import activity as act
from dovecote.mqtt import Message
from dovecote.project import PROJECT
from dovecote.summaries import short_id, summarize
from dovecote.tools.broker import free_port
from dovecote.tools.tail import describe
from dovecote_testing.plugin import Probe, StartService, TestBroker

BUILDER = act.service("builder")
CTX = "urn:uuid:c0ffee12-0000-4000-8000-000000000000"


def build(state: str, progress: int) -> dict[str, Any]:
    return {
        "type": "Build",
        "id": "urn:uuid:00000000-0000-4000-8000-000000000001",
        "name": "Build #1",
        "state": state,
        "progress": progress,
    }


async def cli(env: dict[str, str], *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dovecote.tools.cli",
        *args,
        cwd=PROJECT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


TAILS: list[asyncio.subprocess.Process] = []


@pytest.fixture(autouse=True)
def no_tail_left() -> Iterator[None]:
    """A test that failed before its tail ended must not leave it running."""
    yield
    while TAILS:
        proc = TAILS.pop()
        if proc.returncode is None:  # by pid: the test's event loop may be closed already
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)


async def start_tail(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    """``dovecote tail`` running and subscribed (it says so on stderr once it is)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dovecote.tools.cli",
        "tail",
        *args,
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    TAILS.append(proc)
    assert proc.stderr is not None
    first = await asyncio.wait_for(proc.stderr.readline(), 30)
    assert first.startswith(b"watching "), first
    return proc


async def finish(proc: asyncio.subprocess.Process) -> list[str]:
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode() and " ERROR " not in err.decode(), err.decode()
    return out.decode().splitlines()


async def test_tail_prints_one_line_per_activity_and_marks_retained_and_invalid(
    service_env: dict[str, str], probe: Probe
) -> None:
    probe.publish("state/build", act.new("Update", BUILDER, build("succeeded", 100)), retain=True)
    await probe.wait_for("state/build")
    tail = await start_tail(service_env, "-C", "5")
    started = act.new("Create", BUILDER, build("running", 0), context=CTX)
    probe.publish("events/build/started", started)
    probe.publish("events/build/progress", {"hello": "not an activity"})
    probe.publish("events/build/stopped", b"{oops")
    probe.publish("events/other/thing", act.new("Like", BUILDER, {"type": "Note", "content": "hi"}))
    lines = await finish(tail)

    assert len(lines) == 5, lines
    retained, *live = lines  # the broker sends the retained state first, on subscribing
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} state/build +Update builder → Build 'Build #1' "
        r"state=succeeded 100% retained",
        retained,
    ), retained
    [ok] = [line for line in live if "events/build/started" in line]
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d\.\d{3} events/build/started +Create builder → Build 'Build #1' "
        r"state=running 0% ctx c0ffee12",
        ok,
    ), ok
    [not_as2] = [line for line in live if "events/build/progress" in line]
    assert "INVALID not a valid BuildUpdated: Object missing required field" in not_as2
    assert '{"hello":"not an activity"}' in not_as2
    [not_json] = [line for line in live if "events/build/stopped" in line]
    assert "INVALID malformed JSON" in not_json and "{oops" in not_json
    [other] = [line for line in live if "events/other/thing" in line]
    assert other.endswith("Like   builder → Note 'hi' unregistered topic"), other


async def test_tail_json_gives_the_raw_payload_with_its_marks(
    service_env: dict[str, str], probe: Probe
) -> None:
    state = act.new("Update", BUILDER, build("failed", 70))
    probe.publish("state/build", state, retain=True)
    await probe.wait_for("state/build")
    tail = await start_tail(service_env, "--json", "-C", "2", "state/#")
    probe.publish("state/builds", b"\xff not utf-8")
    first, second = (orjson.loads(line) for line in await finish(tail))
    root = service_env["DOVECOTE_ROOT"]
    assert first == {
        "topic": f"{root}/state/build",
        "qos": 1,
        "retained": True,
        "error": None,
        "activity": state,
    }
    assert second["topic"] == f"{root}/state/builds" and second["retained"] is False
    assert second["error"].startswith("malformed JSON")
    assert second["activity"] == "\ufffd not utf-8"
    # Enough already while the state is still being fetched: it stops there, cleanly.
    for _ in range(3):
        [line] = await finish(await start_tail(service_env, "--json", "-C", "1", "state/#"))
        assert orjson.loads(line)["activity"] == state


async def read_until(proc: asyncio.subprocess.Process, text: str) -> list[str]:
    """Lines of a running ``dovecote tail`` up to the first with ``text``."""
    assert proc.stdout is not None
    lines: list[str] = []
    while not lines or text not in lines[-1]:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line, f"tail ended before {text!r}: {lines}"
        lines.append(line.decode().rstrip("\n"))
    return lines


async def test_tail_shows_the_retained_state_first_on_every_broker(
    broker: TestBroker,
    service_env: dict[str, str],
    start_service: StartService,
    probe: Probe,
) -> None:
    """Who is online, the last build: before anything live, on RabbitMQ too, which gives
    wildcard subscriptions no retained message (docs/brokers.md)."""
    start_service("builder")
    await probe.wait_online("builder")
    state = act.new("Update", BUILDER, build("succeeded", 100))
    probe.publish("state/build", state, retain=True)
    await probe.wait_for("state/build")
    tail = await start_tail(service_env)
    probe.publish("events/build/started", act.new("Create", BUILDER, build("running", 0)))
    lines = await read_until(tail, "events/build/started")
    tail.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(tail.communicate(), 30)
    assert tail.returncode == 0
    *first, live = lines
    assert "Create builder → Build 'Build #1' state=running 0%" in live
    [last_build] = [line for line in first if " state/build " in line]
    assert last_build.endswith("state=succeeded 100% retained"), last_build
    [online] = [line for line in first if "services/builder/1" in line]
    assert "Join   builder → Service 'builder'" in online and "status=online" in online
    said = [line for line in err.decode().splitlines() if line.startswith("dovecote tail:")]
    if broker.kind == "rabbitmq":  # the one line that says what it could and could not get
        assert said == [
            f"dovecote tail: {broker.url} does not deliver retained messages to wildcard "
            "subscriptions: the state topics were subscribed one by one and every worker was "
            f"asked to announce itself; other retained messages under "
            f"{service_env['DOVECOTE_ROOT']}/# cannot be shown"
        ]
    else:
        assert said == []


@pytest.mark.brokers("mosquitto")  # the point is the login, not the broker
async def test_tail_with_a_login_pinned_to_its_client_id_says_it_could_not_check(
    service_env: dict[str, str], probe: Probe
) -> None:
    """Such a login (Mosquitto's dynamic security) cannot open the check's second connection:
    tail does not try, subscribes to the state topics one by one, says so, and shows each
    retained message once although two of its subscriptions match it."""
    state = act.new("Update", BUILDER, build("succeeded", 100))
    probe.publish("state/build", state, retain=True)
    await probe.wait_for("state/build")
    env = {**service_env, "MQTT_CLIENT_ID": f"{service_env['DOVECOTE_ROOT']}-tail-pinned"}
    tail = await start_tail(env, "-W", "2")
    out, err = await asyncio.wait_for(tail.communicate(), 30)
    lines = out.decode().splitlines()
    assert [line for line in lines if " state/build " in line] == [lines[0]], lines
    assert lines[0].endswith("retained")
    broker = service_env["MQTT_URL"]
    assert err.decode().splitlines()[-1] == (
        f"dovecote tail: could not check what {broker} delivers (a login pinned to one client "
        "id cannot open a second connection to check; set DOVECOTE_BROKER_CAPABILITIES): the "
        "state topics were subscribed one by one; who is online may be missing"
    )


@pytest.mark.brokers("mosquitto")
async def test_tail_takes_the_declared_capabilities_instead_of_checking(
    service_env: dict[str, str], start_service: StartService, probe: Probe
) -> None:
    start_service("builder")
    await probe.wait_online("builder")
    env = {**service_env, "DOVECOTE_BROKER_CAPABILITIES": "none"}  # as on RabbitMQ 3.10
    tail = await start_tail(env, "-W", "2", "services/+/+")
    out, err = await asyncio.wait_for(tail.communicate(), 30)
    assert b"/probe/" not in out, "no check ran"
    joins = [line for line in out.decode().splitlines() if "services/builder/1" in line]
    assert len(joins) == 2, joins  # the retained Join, and the answer to the question
    assert "does not deliver retained messages to wildcard subscriptions" in err.decode()
    code, _, err_text = await cli({**env, "DOVECOTE_BROKER_CAPABILITIES": "lots"}, "tail")
    assert code == 2 and "DOVECOTE_BROKER_CAPABILITIES: a list of" in err_text


async def test_publish_validates_against_the_registry_then_sends(
    service_env: dict[str, str], probe: Probe, tmp_path: Path
) -> None:
    code, out, err = await cli(
        service_env,
        "publish",
        "commands/builder/start",
        '{"type": "Start", "object": {"type": "Build", "shouldFail": true}}',
    )
    assert code == 0, err
    assert err == "filled in: @context, id, published, actor\n"
    root = service_env["DOVECOTE_ROOT"]
    assert re.fullmatch(
        rf"published Start (urn:uuid:[0-9a-f-]{{36}}) to {root}/commands/builder/start "
        r"\(QoS 1, not retained; usually published by gateway\)\n",
        out,
    ), out
    [sent] = await probe.wait_for("commands/builder/start")
    assert sent["id"] in out and sent["object"] == {"type": "Build", "shouldFail": True}
    assert sent["actor"] == {
        "type": "Application",
        "id": "urn:dovecote:cli:publish",
        "name": "dovecote publish",
    }

    # From a file (here: stdin), complete: sent as written, retained as the registry says.
    state = act.new("Update", BUILDER, build("succeeded", 100))
    code, out, err = await cli(
        service_env, "publish", "state/build", "-f", "-", stdin=orjson.dumps(state)
    )
    assert (code, err) == (0, ""), err
    assert "(QoS 1, retained; usually published by builder)" in out
    late = await Probe(probe.conn.broker.redacted(), probe.root).start("state/build")
    [retained] = await late.wait_for("state/build")
    await late.stop()
    assert retained == state
    assert late.messages[0].retain


@pytest.mark.brokers("mosquitto")  # no broker answers at MQTT_URL: which one is not the point
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["events/build/exploded", "{}"],
            "'events/build/exploded' is not a registered topic; did you mean events/build/",
        ),
        (["events/#", "{}"], "'events/#' is a filter: publish to one concrete topic"),
        (["commands/builder/start", "{type: Start"], "the activity is not JSON: "),
        (["commands/builder/start", "[1]"], "the activity must be a JSON object"),
        (
            ["commands/builder/start", '{"type": "Start", "object": {"type": "Nope"}}'],
            "not a valid activity for commands/builder/start: not a valid StartBuild: "
            "Invalid enum value 'Nope' - at `$.object.type`",
        ),
        (
            ["commands/builder/start", '{"type": "Launch", "object": {"type": "Build"}}'],
            "not a valid StartBuild: Invalid enum value 'Launch' - at `$.type`",
        ),
        (["services/Bad Id/1", "{}"], "is not a registered topic"),
        (["commands/builder/start", "{}", "-f", "x.json"], "either as an argument or with -f"),
        (["commands/builder/start", "-f", "/nonexistent.json"], "cannot read /nonexistent.json"),
    ],
)
async def test_publish_refuses_bad_input_clearly_and_sends_nothing(
    service_env: dict[str, str], args: list[str], message: str
) -> None:
    # An unreachable broker: had anything been sent, this would fail differently (exit 1).
    env = {**service_env, "MQTT_URL": f"mqtt://127.0.0.1:{free_port()}"}
    code, out, err = await cli(env, "publish", *args)
    assert (code, out) == (2, "")
    assert err.startswith("dovecote publish: ") and message in err, err


@pytest.mark.brokers("mosquitto")  # no broker answers at MQTT_URL: which one is not the point
async def test_the_tools_say_when_the_broker_is_not_there(service_env: dict[str, str]) -> None:
    port = free_port()
    env = {**service_env, "MQTT_URL": f"mqtt://127.0.0.1:{port}"}
    start = '{"type": "Start", "object": {"type": "Build"}}'
    (tcode, _, terr), (pcode, _, perr), (dcode, dout, _) = await asyncio.gather(
        cli(env, "tail", "--connect-timeout", "1"),
        cli(env, "publish", "--connect-timeout", "1", "commands/builder/start", start),
        cli(env, "publish", "--dry-run", "commands/builder/start", start),
    )
    unreachable = f"cannot reach the broker at mqtt://127.0.0.1:{port} within 1 s"
    assert tcode == 1 and unreachable in terr
    assert pcode == 1 and unreachable in perr
    # --dry-run checks and prints, and needs no broker.
    assert dcode == 0 and orjson.loads(dout)["object"] == {"type": "Build"}


@pytest.mark.brokers("mosquitto")  # refused before connecting: the broker is not the point
async def test_tail_refuses_a_malformed_filter(service_env: dict[str, str]) -> None:
    code, _, err = await cli(service_env, "tail", "events/#/x")
    assert code == 2
    assert "bad filter 'events/#/x': '+' must be a whole level, '#' the last one" in err


def test_summaries_pick_the_telling_fields() -> None:
    assert short_id("urn:uuid:7757ab12-aaaa-4bbb-8ccc-000000000000") == "7757ab12"
    assert summarize({"type": "Image", "name": "cat.png", "width": 640, "size": 1234}) == (
        "Image 'cat.png' width=640 size=1234"
    )
    assert summarize({"type": "Build", "progress": 40, "state": "running"}) == (
        "Build state=running 40%"
    )
    assert summarize("urn:x") == "urn:x"
    note = {"type": "Note", "content": "a fairly long note that takes more than forty characters"}
    assert summarize(note) == f"Note {note['content']!r}"
    cleared = Message("t1/state/build", b"", 1, True, 1)
    assert describe(cleared, "t1").endswith("state/build  (empty: a cleared retained topic)")


async def test_tail_hides_metrics_reports_unless_asked_for_them(
    service_env: dict[str, str], probe: Probe
) -> None:
    report = {
        "type": "Service",
        "id": "urn:dovecote:service:builder:1",
        "name": "builder",
        "instance": "1",
        "started": act.now(),
        "interval": 5.0,
        "connected": True,
        "reconnects": 0,
        "handled": {},
        "latency": {"bounds": [0.1], "counts": [0, 0], "sum": 0.0},
        "skipped": 0,
        "retries": 0,
        "parked": 0,
        "published": 3,
        "unacknowledged": 0,
        "inflight": 0,
        "lag": 0.0,
    }
    # A wildcard that covers the reports (+/+/+: not the tail's own services/query or probe).
    everything = await start_tail(service_env, "+/+/+", "-C", "1")
    probe.publish("metrics/builder/1", act.new("Update", BUILDER, report), qos=0)
    probe.publish("events/build/started", act.new("Create", BUILDER, build("running", 0)))
    [line] = await finish(everything)
    assert "events/build/started" in line  # the report went by, unseen
    named = await start_tail(service_env, "metrics/#", "-C", "1")
    probe.publish("metrics/builder/1", act.new("Update", BUILDER, report), qos=0)
    [shown] = await finish(named)
    assert "metrics/builder/1" in shown and "INVALID" not in shown
