"""The replay ring alone: keys, its byte budget, who may resume, what each person gets, and a
cursor read by another gateway that heard the same frames in another order."""

from __future__ import annotations

import random
import re

from aiohttp import WSCloseCode

from dovecote.project import PROJECT
from services.gateway.bus.replay import (
    ANCHOR,
    CURSOR_KEYS,
    ENTRY_OVERHEAD,
    ReplayRing,
    key_of,
)


def key(n: int) -> str:
    return key_of("t/events/test", f"urn:uuid:{n}")


def frame(n: int, size: int = 10) -> bytes:
    return str(n).encode().ljust(size, b".")


def fill(ring: ReplayRing, numbers: range | list[int], user: str | None = None) -> None:
    for n in numbers:
        ring.add(key(n), user, frame(n))


def test_a_key_names_a_frame_by_topic_and_activity_on_every_gateway() -> None:
    assert key_of("a/b", "urn:uuid:1") == key_of("a/b", "urn:uuid:1")  # any process
    assert key_of("a/b", "urn:uuid:1") != key_of("a/c", "urn:uuid:1")
    assert key_of("a/b", "urn:uuid:1") != key_of("a/b", "urn:uuid:2")
    assert re.fullmatch(r"[0-9a-f]{12}", key_of("a/b", "urn:uuid:1"))


def test_frames_are_numbered_and_replayed_after_the_cursor() -> None:
    ring = ReplayRing(1 << 20)
    assert ring.seq == 0 and ring.recent(None) == []
    seqs = [ring.add(key(n), None, frame(n)) for n in range(1, 6)]
    assert seqs == [1, 2, 3, 4, 5] and ring.seq == 5
    assert ring.recent(None) == [key(n) for n in range(1, 6)]
    assert ring.why_not([key(1), key(2), key(3)], "ada") is None
    assert ring.after([key(1), key(2), key(3)], "ada") == [frame(4), frame(5)]
    assert ring.after([key(5)], "ada") == []


def test_a_redelivered_message_is_held_and_sent_once() -> None:
    ring = ReplayRing(1 << 20)
    assert ring.add(key(1), None, frame(1)) == 1
    assert ring.add(key(1), None, frame(1)) is None
    assert ring.seq == 1 and len(ring.entries) == 1


def test_the_oldest_frames_go_once_the_budget_is_spent() -> None:
    each = 10 + ENTRY_OVERHEAD
    ring = ReplayRing(3 * each)
    for n in range(1, 8):
        ring.add(key(n), None, frame(n))
        assert ring.held <= 3 * each
    assert (ring.first, ring.seq, len(ring.entries), len(ring.where)) == (5, 7, 3, 3)
    assert ring.why_not([key(5)], "ada") is None  # it saw 5: it missed 6 and 7, held
    assert ring.after([key(5)], "ada") == [frame(6), frame(7)]
    reason = ring.why_not([key(3), key(4)], "ada")  # it missed 5, 6, 7: 4 is gone
    assert reason is not None and "not held here" in reason
    assert ring.after([key(4), key(5)], "ada") == [frame(6), frame(7)]  # 4 gone: no matter


def test_a_frame_bigger_than_the_budget_is_never_held() -> None:
    ring = ReplayRing(200 + ENTRY_OVERHEAD)
    ring.add(key(1), None, frame(1))
    ring.add(key(2), None, frame(2, size=500))
    assert not ring.entries and ring.held == 0 and ring.first == 3 and not ring.where


def test_a_gateway_that_started_after_the_page_s_frames_says_so() -> None:
    ring = ReplayRing(1 << 20)
    fill(ring, range(10, 20))
    reason = ring.why_not([key(1), key(2)], "ada")
    assert reason is not None and "has not heard" in reason and "began at" in reason
    empty = ring.why_not([], "ada")
    assert empty is not None and "names no frame" in empty


def test_the_newest_frame_of_the_cursor_must_be_held_its_older_ones_need_not() -> None:
    ring = ReplayRing(1 << 20)
    fill(ring, range(55, 80))
    # A page that saw 1..60: this gateway started at 55, after most of the page's frames.
    cursor = [key(n) for n in range(60 - CURSOR_KEYS + 1, 61)]
    assert ring.why_not(cursor, None) is None
    assert ring.after(cursor, None) == [frame(n) for n in range(61, 80)]
    # The newest missing: it may not have arrived yet, or never will.
    cursor[-1] = key(999)
    reason = ring.why_not(cursor, None)
    assert reason is not None and "has not heard" in reason


def test_a_replay_holds_only_the_frames_for_everyone_and_for_that_person() -> None:
    ring = ReplayRing(1 << 20)
    ring.add(key(0), None, b"all-0")
    ring.add(key(1), None, b"all-1")
    ring.add(key(2), "grace", b"grace-2")
    ring.add(key(3), "ada", b"ada-3")
    ring.add(key(4), None, b"all-4")
    ring.add(key(5), "grace", b"grace-5")
    assert ring.recent("ada") == [key(0), key(1), key(3), key(4)]
    assert ring.recent(None, 2) == [key(1), key(4)]
    assert ring.after([key(0)], "ada") == [b"all-1", b"ada-3", b"all-4"]
    assert ring.after([key(0)], "grace") == [b"all-1", b"grace-2", b"all-4", b"grace-5"]
    assert ring.after([key(3)], "linus") == []  # ada's frame does not place linus
    assert ring.why_not([key(3)], "linus") is not None
    assert ring.after([key(0)], "gr") == [b"all-1", b"all-4"]  # a prefix is another person


def test_another_gateway_that_heard_frames_in_another_order_sends_each_missed_one_once() -> None:
    """Gateways A and B hear the same 2,000 frames, B's order displaced by a few places (a
    RabbitMQ cluster's nodes route concurrent publishers' messages each in its own order);
    pages that saw A's stream up to any point resume on B: nothing missed, nothing twice."""
    rng = random.Random(7)
    order_a = list(range(2000))
    order_b = sorted(order_a, key=lambda n: n + rng.uniform(0, 10))  # moved up to 10 places
    assert max(abs(order_b.index(n) - n) for n in order_a) >= 6
    b = ReplayRing(1 << 24)
    for n in order_b:
        b.add(key(n), None, frame(n))
    for stop in range(CURSOR_KEYS, 2000, 37):
        seen = order_a[:stop]
        cursor = [key(n) for n in seen[-CURSOR_KEYS:]]
        assert b.why_not(cursor, None) is None
        sent = [int(f.rstrip(b".")) for f in b.after(cursor, None)]
        assert sorted(sent) == sorted(set(order_a) - set(seen)), stop
    # Moved farther than the anchor allows, a frame is sent twice: the bound is real.
    old = 100 - CURSOR_KEYS - 1  # seen by the page before its cursor's frames
    far = [n for n in order_a if n != old]
    far.insert(far.index(100 - ANCHOR + 1), old)  # heard by C after the anchor
    c = ReplayRing(1 << 24)
    for n in far:
        c.add(key(n), None, frame(n))
    cursor = [key(n) for n in range(100 - CURSOR_KEYS, 100)]
    assert old in [int(f.rstrip(b".")) for f in c.after(cursor, None)]


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


def test_a_gateway_that_got_the_page_s_newest_frames_only_as_retained_state_cannot_resume() -> None:
    """A restarted gateway gets the retained state on subscribing: the same frames (keys) as
    a page saw last, maybe, but it was not listening to what followed them."""
    ring = ReplayRing(1 << 20)
    for n in range(10):  # presence and state, sent by the broker on subscribing
        ring.add(key(n), None, frame(n), live=False)
    cursor = [key(n) for n in range(10)]
    reason = ring.why_not(cursor, None)
    assert reason is not None and "has not heard" in reason
    fill(ring, range(10, 12))  # live from here on: a page that saw 10 resumes
    assert ring.why_not([*cursor, key(10)], None) is None
    assert ring.after([*cursor, key(10)], None) == [frame(11)]
