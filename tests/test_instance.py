"""Instance ids unique across machines without hand numbering, stable across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from dovecote import instance
from dovecote.config import ConfigError
from dovecote.tools.supervisor import Supervisor
from dovecote_testing.plugin import Probe, ServiceProcess, StartService, wait_until


def test_a_machine_name_is_one_valid_topic_level_and_long_ones_stay_distinct() -> None:
    assert instance.machine_name({"DOVECOTE_MACHINE": "Web-1.EU.example.com"}) == (
        "web-1-eu-example-com"
    )
    a = instance.machine_name({"DOVECOTE_MACHINE": "worker-0001.rack-12.dc-west.example.com"})
    b = instance.machine_name({"DOVECOTE_MACHINE": "worker-0001.rack-12.dc-east.example.com"})
    assert a != b and len(a) <= instance.MACHINE_CHARS and len(b) <= instance.MACHINE_CHARS
    assert a.startswith("worker-0001")
    with pytest.raises(ConfigError, match="DOVECOTE_MACHINE"):
        instance.machine_name({"DOVECOTE_MACHINE": "..."})


def test_claims_take_the_lowest_number_no_live_holder_has(tmp_path: Path) -> None:
    folder = tmp_path
    env = {"DOVECOTE_MACHINE": "m1"}
    # Each claim holds its lock file open: a second claim here is another holder.
    assert instance.claim(env, "r", "tally", folder) == "m1-1"
    assert instance.claim(env, "r", "tally", folder) == "m1-2"
    assert instance.claim(env, "r", "points", folder) == "m1-1"  # per service
    assert instance.claim({"DOVECOTE_MACHINE": "m2"}, "r2", "tally", folder) == "m2-1"


def test_the_supervisor_numbers_auto_workers_per_machine() -> None:
    env = {"DOVECOTE_INSTANCE": "auto", "DOVECOTE_MACHINE": "box-a"}
    sup = Supervisor({"tally": 2, "points": 1}, env, say=lambda _: None, handle_signals=False)
    assert [w.instance for w in sup.workers] == ["box-a-1", "box-a-2", "box-a-1"]


@pytest.mark.brokers("mosquitto")
async def test_auto_ids_differ_across_machines_and_a_killed_worker_gets_its_id_and_session_back(
    start_service: StartService, probe: Probe
) -> None:
    def tally(machine: str) -> ServiceProcess:
        return start_service(
            "tally",
            package="tests.services",
            DOVECOTE_INSTANCE="auto",
            DOVECOTE_MACHINE=machine,
        )

    first = tally("m1")
    await probe.wait_online("tally", "m1-1", timeout=30)
    tally("m1")
    await probe.wait_online("tally", "m1-2", timeout=30)
    tally("m2")  # another machine (its own name; here the same data folder)
    await probe.wait_online("tally", "m2-1", timeout=30)
    [join] = probe.on("services/tally/m1-1")
    killed = join["object"]["pid"]
    first.kill()
    reborn = tally("m1")
    [again] = await probe.wait_for(
        "services/tally/m1-1", lambda a: a["object"]["pid"] != killed, timeout=30
    )
    assert again["type"] == "Join"
    # The same client id as the killed worker's: its persistent session, resumed.
    await wait_until(lambda: "session resumed" in reborn.log, 10, "the session resumed")
