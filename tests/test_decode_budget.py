"""The gateway's one decoding budget (services/gateway/images/budget.py), with real threads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.gateway.images.budget import MemoryBudget
from services.gateway.images.checks import BadImage


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


class Ledger:
    """What the jobs hold at once, as they run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held = self.peak = 0
        self.started: list[str] = []

    def job(self, name: str, cost: int, seconds: float) -> str:
        with self.lock:
            self.held += cost
            self.peak = max(self.peak, self.held)
            self.started.append(name)
        time.sleep(seconds)
        with self.lock:
            self.held -= cost
        return name


async def test_jobs_together_never_hold_more_than_the_budget(pool: ThreadPoolExecutor) -> None:
    budget, ledger = MemoryBudget(100), Ledger()
    costs = [60, 30, 50, 10, 90, 40, 20, 70]
    done = await asyncio.gather(
        *(budget.run(pool, c, ledger.job, str(n), c, 0.02) for n, c in enumerate(costs))
    )
    assert done == [str(n) for n in range(len(costs))]
    assert ledger.peak <= 100  # without the budget: the first four together, 150
    assert budget.free == 100


async def test_a_large_job_is_not_passed_by_small_ones_behind_it(
    pool: ThreadPoolExecutor,
) -> None:
    budget, ledger = MemoryBudget(100), Ledger()
    first = asyncio.ensure_future(budget.run(pool, 60, ledger.job, "first", 60, 0.2))
    await asyncio.sleep(0)
    large = asyncio.ensure_future(budget.run(pool, 95, ledger.job, "large", 95, 0.05))
    await asyncio.sleep(0)
    small = asyncio.ensure_future(budget.run(pool, 10, ledger.job, "small", 10, 0))
    await asyncio.sleep(0)
    assert budget.waiting == 2  # small would fit beside first, yet waits its turn
    await asyncio.gather(first, large, small)
    assert ledger.started == ["first", "large", "small"]


async def test_a_job_larger_than_the_whole_budget_is_refused_at_once(
    pool: ThreadPoolExecutor,
) -> None:
    budget = MemoryBudget(100 * 2**20)
    with pytest.raises(BadImage) as err:
        await budget.run(pool, 150 * 2**20, time.sleep, 10)
    assert err.value.status == 413
    assert "150 MiB" in str(err.value) and "IMAGE_DECODE_BUDGET_BYTES" in str(err.value)
    assert budget.free == 100 * 2**20


async def test_a_job_that_waits_too_long_is_told_to_come_back_and_leaves_the_line(
    pool: ThreadPoolExecutor,
) -> None:
    budget, ledger = MemoryBudget(100, wait=0.1), Ledger()
    running = asyncio.ensure_future(budget.run(pool, 100, ledger.job, "running", 100, 0.4))
    await asyncio.sleep(0.02)
    with pytest.raises(BadImage) as err:
        await budget.run(pool, 50, ledger.job, "late", 50, 0)
    assert err.value.status == 503 and "try again" in str(err.value)
    assert budget.waiting == 0
    await running
    assert await budget.run(pool, 50, ledger.job, "next", 50, 0) == "next"
    assert ledger.started == ["running", "next"] and budget.free == 100


async def test_a_cancelled_request_keeps_its_bytes_counted_until_its_thread_ends(
    pool: ThreadPoolExecutor,
) -> None:
    """The client went away mid-decode: the thread still holds the memory, so the budget
    does too; and one cancelled while in line leaves it without taking anything."""
    budget = MemoryBudget(100)
    started, release = threading.Event(), threading.Event()

    def decode() -> None:
        started.set()
        release.wait(5)

    decoding = asyncio.ensure_future(budget.run(pool, 80, decode))
    waiting = asyncio.ensure_future(budget.run(pool, 50, time.sleep, 0))
    assert await asyncio.to_thread(started.wait, 5)
    assert (budget.free, budget.waiting) == (20, 1)
    decoding.cancel()
    waiting.cancel()
    await asyncio.sleep(0.05)
    assert (budget.free, budget.waiting) == (20, 0)  # the thread still runs
    release.set()
    for _ in range(500):
        if budget.free == 100:
            break
        await asyncio.sleep(0.01)
    assert budget.free == 100
