"""The replay ring alone: numbering, its byte budget, who may resume, what each person gets."""

from __future__ import annotations

import re

from aiohttp import WSCloseCode

from dovecote.project import PROJECT
from services.gateway.bus.replay import ENTRY_OVERHEAD, ReplayRing


def frame(n: int, size: int = 10) -> bytes:
    return str(n).encode().ljust(size, b".")


def test_frames_are_numbered_from_one_and_replayed_after_the_seq_given() -> None:
    ring = ReplayRing(1 << 20)
    assert ring.seq == 0 and ring.why_not(ring.epoch, 0) is None
    assert ring.after(0, "ada") == []
    seqs = [ring.add(None, frame(n)) for n in range(1, 6)]
    assert seqs == [1, 2, 3, 4, 5] and ring.seq == 5
    assert ring.after(0, "ada") == [frame(n) for n in range(1, 6)]
    assert ring.after(3, "ada") == [frame(4), frame(5)]
    assert ring.after(5, "ada") == []


def test_the_oldest_frames_go_once_the_budget_is_spent() -> None:
    each = 10 + ENTRY_OVERHEAD
    ring = ReplayRing(3 * each)
    for n in range(1, 8):
        ring.add(None, frame(n))
        assert ring.held <= 3 * each
    assert (ring.first, ring.seq, len(ring.entries)) == (5, 7, 3)
    # Seen up to 4: it missed 5, 6, 7, all held. Seen up to 3: 4 is gone.
    assert ring.why_not(ring.epoch, 4) is None
    assert ring.after(4, "ada") == [frame(5), frame(6), frame(7)]
    reason = ring.why_not(ring.epoch, 3)
    assert reason is not None and "too old" in reason and "5 to 7" in reason


def test_a_frame_bigger_than_the_budget_is_never_held_and_nobody_resumes_over_it() -> None:
    ring = ReplayRing(200)
    ring.add(None, frame(1))
    ring.add(None, frame(2, size=500))
    assert not ring.entries and ring.held == 0 and ring.first == 3
    assert ring.why_not(ring.epoch, 1) is not None  # it missed frame 2, which is gone
    assert ring.why_not(ring.epoch, 2) is None  # it saw frame 2: nothing missed
    ring.add(None, frame(3))
    assert ring.after(2, "ada") == [frame(3)]


def test_a_budget_of_zero_holds_nothing() -> None:
    ring = ReplayRing(0)
    ring.add(None, frame(1))
    assert not ring.entries
    assert ring.why_not(ring.epoch, 0) is not None
    assert ring.why_not(ring.epoch, 1) is None


def test_another_epoch_or_a_seq_never_sent_cannot_resume() -> None:
    ring = ReplayRing(1 << 20)
    ring.add(None, frame(1))
    other = ReplayRing(1 << 20)
    assert other.epoch != ring.epoch  # random per process start
    wrong = ring.why_not(other.epoch, 1)
    assert wrong is not None and "epoch" in wrong
    future = ring.why_not(ring.epoch, 2)
    assert future is not None and "never sent" in future


def test_a_replay_holds_only_the_frames_for_everyone_and_for_that_person() -> None:
    ring = ReplayRing(1 << 20)
    ring.add(None, b"all-1")
    ring.add("grace", b"grace-2")
    ring.add("ada", b"ada-3")
    ring.add(None, b"all-4")
    ring.add("grace", b"grace-5")
    assert ring.after(0, "ada") == [b"all-1", b"ada-3", b"all-4"]
    assert ring.after(0, "grace") == [b"all-1", b"grace-2", b"all-4", b"grace-5"]
    assert ring.after(2, "linus") == [b"all-4"]
    assert ring.after(0, "gr") == [b"all-1", b"all-4"]  # a prefix is another person


def test_the_protocol_doc_has_every_gateway_frame_and_close_code() -> None:
    code = "".join(p.read_text() for p in (PROJECT / "services" / "gateway").rglob("*.py"))
    doc = (PROJECT / "docs" / "websocket.md").read_text()
    kinds = set(re.findall(r'notice\(\s*"([a-z-]+)"', code))
    assert {"hello", "cannot-resume", "error", "accepted"} <= kinds
    closes = {int(getattr(WSCloseCode, name)) for name in re.findall(r"WSCloseCode\.(\w+)", code)}
    assert 1013 in closes and 1001 in closes
    for kind in kinds:
        assert f"| `{kind}` |" in doc, kind
    for close in closes:
        assert f"| {close} |" in doc, close
