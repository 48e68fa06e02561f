"""`make bench sections=herd` at a small scale: every socket opens, every tick is timed on
every socket, and the figures it prints are the ones it measured (issue 25)."""

from __future__ import annotations

import pytest

from bench import herd
from dovecote_testing.plugin import TestBroker

SOCKETS, TICKS, SETTLE = 300, 2, 0.5


@pytest.mark.brokers("mosquitto")  # the gateway's fan-out: one broker says it
@pytest.mark.timeout(60)
async def test_a_small_herd_opens_every_socket_and_times_every_tick_on_each(
    broker: TestBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    h = await herd.measure(
        broker.url, SOCKETS, TICKS, rate=3000, loaders=2, idle_seconds=0.2, settle=SETTLE
    )
    assert (h.opened, h.open_at_end, h.wanted, h.skipped) == (SOCKETS, SOCKETS, 0, "")
    assert (dict(h.failed), dict(h.dropped), h.duplicates) == ({}, {}, 0)
    # Each socket got each tick once; tick 0 (the warm-up) is not counted.
    assert h.per_socket == {TICKS: SOCKETS}
    assert h.tally.frames == h.expected == SOCKETS * TICKS
    assert 0 < h.tally.percentile(50) <= h.tally.percentile(99) < 1000
    # The kernel stamped every tick's arrival, which comes before the load process reads it.
    assert (h.unstamped, h.arrived.frames) == (0, h.tally.frames)
    for p in (50, 99, 100):
        assert 0 < h.arrived.percentile(p) <= h.tally.percentile(p)
    assert len(h.handshake_ms) == SOCKETS
    assert h.rss_base > 50 * 2**20 and h.rss_open > h.rss_base and h.rss_peak >= h.rss_open
    # From tick 1 until the last reached every socket (CPU time is read in 10 ms clock
    # ticks: too coarse to ask anything of the load processes' few ms here).
    assert TICKS - 1 < h.tick_seconds < TICKS + 2
    # The gateway ran under bench.gc_watch: its start alone runs full collections.
    assert h.collections and all(ms >= 0 for _, ms in h.collections)
    herd.report(h)
    printed = capsys.readouterr().out
    assert f"opened {SOCKETS} of {SOCKETS}" in printed
    assert f"{SOCKETS * TICKS:,} of {SOCKETS * TICKS:,} deliveries" in printed
    assert "sockets that missed a tick: 0" in printed and "dropped: none" in printed
