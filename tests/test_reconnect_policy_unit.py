"""The two rules that keep a cut-off worker from flooding the bus (issue 22), in isolation:
how long to wait after losing an accepted connection (``dovecote.backoff.AfterLoss``), and
doing something at most once per interval (``dovecote.throttle.Throttle``). On a real
broker: tests/test_reconnect_backoff.py."""

from __future__ import annotations

import asyncio

from dovecote.backoff import AfterLoss, Backoff
from dovecote.throttle import Throttle


def test_a_lost_node_is_left_at_once_and_a_broker_that_keeps_cutting_is_backed_off() -> None:
    rule = AfterLoss(Backoff(first=0.25, factor=2.0, cap=4.0), held_after=10.0)
    assert rule.lost(3600.0) == 0.0  # a connection that held: its node is gone, fail over
    assert rule.lost(0.2) == 0.0  # the first short one too: the next node may be dying
    delays = [rule.lost(0.2) for _ in range(8)]
    # Then exponential, each within the jitter (+-20 %), up to the cap.
    for delay, nominal in zip(delays, [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0], strict=True):
        assert 0.8 * nominal <= delay <= 1.2 * nominal, (delays, nominal)
    assert rule.cuts == 9
    # A connection that holds again starts the count over: the next loss is a failover.
    assert rule.lost(10.0) == 0.0 and rule.cuts == 0
    assert rule.lost(0.1) == 0.0
    assert 0.2 <= rule.lost(0.1) <= 0.3


def test_jitter_spreads_workers_that_lost_the_same_broker() -> None:
    rules = [AfterLoss(Backoff()) for _ in range(50)]
    assert {rule.lost(0.0) for rule in rules} == {0.0}  # each fails over at once
    waits = {rule.lost(0.0) for rule in rules}  # cut again: each waits its own while
    assert len(waits) > 40, "fifty workers would come back in the same instant"
    assert all(0.2 <= w <= 0.3 for w in waits)


async def test_a_burst_of_requests_is_one_run_now_and_one_at_the_end_of_the_interval() -> None:
    runs: list[float] = []
    loop = asyncio.get_running_loop()
    throttle = Throttle(0.2, lambda: runs.append(loop.time()))
    began = loop.time()
    for _ in range(100):
        throttle.request()
    assert len(runs) == 1, "the first request runs at once"
    await asyncio.sleep(0.3)
    assert len(runs) == 2, "the other 99 are one run, when the interval is over"
    assert 0.15 <= runs[1] - began <= 0.3
    assert throttle.requests == 100 and throttle.runs == 2
    await asyncio.sleep(0.25)  # an interval with no request: the next one runs at once
    throttle.request()
    assert len(runs) == 3


async def test_a_run_that_could_not_be_done_does_not_make_the_next_request_wait() -> None:
    connected = False
    asked: list[int] = []

    def ask() -> bool:
        if connected:
            asked.append(1)
        return connected

    throttle = Throttle(0.2, ask)
    throttle.request()  # disconnected: not done
    assert asked == [] and throttle.runs == 0
    connected = True
    throttle.request()  # at once: the last run was not one
    assert asked == [1] and throttle.runs == 1


async def test_a_throttle_cancelled_runs_nothing_more() -> None:
    runs: list[int] = []
    throttle = Throttle(0.1, lambda: runs.append(1))
    throttle.request()
    throttle.request()
    throttle.cancel()
    await asyncio.sleep(0.2)
    assert runs == [1]
