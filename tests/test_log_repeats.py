"""A warning that repeats is said a few times, then counted (``dovecote.logs.Repeats``).

Issue 21: one burst of dead letters over the store's cap wrote 4,204 WARNING lines, one per
letter: the log grew without bound with the input.
"""

from __future__ import annotations

import io
import logging

import pytest

from dovecote.errors import ConfigError
from dovecote.logs import Repeats, repeats_from


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def logger_into(out: io.StringIO, clock: Clock) -> tuple[logging.Logger, Repeats]:
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    repeats = Repeats(handler, said=3, window=60.0, clock=clock)
    handler.addFilter(repeats)
    log = logging.getLogger(f"test.repeats.{id(out)}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, repeats


def test_a_flood_of_one_warning_is_three_lines_and_a_count_and_the_rest_is_untouched() -> None:
    out, clock = io.StringIO(), Clock()
    log, repeats = logger_into(out, clock)
    for n in range(1000):
        log.warning("dropped letter %d", n)  # one call site
        log.info("an info line %d", n) if n < 5 else None  # below WARNING: never held
    log.warning("another warning")  # another call site: its own count
    lines = out.getvalue().splitlines()
    assert [x for x in lines if "dropped letter" in x] == [
        "WARNING dropped letter 0",
        "WARNING dropped letter 1",
        "WARNING dropped letter 2",
    ]
    assert sum("an info line" in x for x in lines) == 5 and "WARNING another warning" in lines
    clock.now += 61  # the window closes: the timer (here called by hand) sums it up
    repeats.flush()
    assert out.getvalue().splitlines()[-1] == (
        "WARNING 997 more like this in 60 s, not logged one by one; the last: dropped letter 999"
    )
    log.warning("dropped letter %d", 1000)  # a new window: said again
    assert out.getvalue().splitlines()[-1] == "WARNING dropped letter 1000"
    if repeats.timer is not None:
        repeats.timer.cancel()


def test_a_window_that_closes_with_new_lines_sums_up_before_them() -> None:
    out, clock = io.StringIO(), Clock()
    log, repeats = logger_into(out, clock)

    def bad(n: int) -> None:
        log.error("bad input %d", n)  # one call site

    for n in range(10):
        bad(n)
    clock.now += 60
    bad(10)
    assert out.getvalue().splitlines()[-2:] == [
        "ERROR 7 more like this in 60 s, not logged one by one; the last: bad input 9",
        "ERROR bad input 10",
    ]
    repeats.flush()  # nothing left to say twice
    assert out.getvalue().splitlines()[-1] == "ERROR bad input 10"
    if repeats.timer is not None:
        repeats.timer.cancel()


def test_log_repeats_is_n_per_seconds_or_off() -> None:
    assert repeats_from("5/60") == (5, 60.0)
    assert repeats_from("0") is None
    for bad in ("x", "0/60", "5/0", "-1/5"):
        with pytest.raises(ConfigError, match="LOG_REPEATS"):
            repeats_from(bad)
