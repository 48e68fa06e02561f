"""What the notifier says, and to whom: pure functions called directly."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from dovecote import activity as act
from dovecote.store import Place
from dovecote_testing.plugin import Databases
from services.builder import topics as builder_topics
from services.gateway import topics as gateway_topics
from services.notifier import messages
from services.notifier import topics as notifier_topics
from services.notifier.inbox import Counts, InboxStore, Note
from services.notifier.service import kept

ADA = {
    "type": "Person",
    "id": "http://gw/users/ada",
    "name": "Ada Lovelace",
    "preferredUsername": "ada",
    "followers": "http://gw/users/ada/followers",
}
GRACE = {**ADA, "id": "http://gw/users/grace", "name": "Grace", "preferredUsername": "grace"}
IMAGE = {
    "type": "Image",
    "id": "http://gw/images/abc",
    "url": "http://gw/images/abc",
    "mediaType": "image/jpeg",
    "name": "cat <b>",
    "width": 10,
    "height": 10,
    "size": 100,
}


def created() -> Any:
    return gateway_topics.IMAGE_CREATED.codec.decode(
        act.encode(act.new("Create", ADA, IMAGE, context="urn:uuid:ctx"))
    )


def test_followers_collections_are_read_as_people() -> None:
    found = messages.people({"type": "Collection", "totalItems": 1, "items": [GRACE]})
    assert [p.preferredUsername for p in found] == ["grace"]
    ordered = messages.people({"type": "OrderedCollection", "orderedItems": [GRACE]})
    assert [p.id for p in ordered] == [GRACE["id"]]
    with pytest.raises(ValueError, match="not an AS2 collection"):
        messages.people({"type": "Note", "items": "nope"})


@pytest.mark.parametrize("bad", [None, "", "../ada", "Ada", "ada/notifications", "+", "#"])
def test_a_person_without_a_valid_user_id_gets_no_topic(bad: str | None) -> None:
    person = act.Actor(id="http://gw/users/x", type="Person", preferredUsername=bad)
    assert messages.username(person) is None


def test_a_notification_is_valid_addressed_and_stable_across_redelivery() -> None:
    cause = created()
    grace = act.Actor(id=GRACE["id"], type="Person", name="Grace", preferredUsername="grace")
    summary = messages.image_summary(cause)
    assert summary == "Ada Lovelace shared a photo: “cat <b>”"
    first = messages.notification(act.service("notifier"), grace, cause, summary)
    again = messages.notification(act.service("notifier"), grace, cause, summary)
    notifier_topics.NOTIFICATION.codec.decode(act.encode(first))  # valid for its topic
    assert first.id == again.id  # a redelivered cause makes the same notification
    assert first.to == [GRACE["id"]] and first.context == "urn:uuid:ctx"
    assert first.object.object["url"] == IMAGE["url"]


def test_a_kept_notification_is_sent_again_byte_for_byte_as_it_was_published() -> None:
    """The inbox reply decodes what the inbox kept into Notifications and encodes them
    again: a decoded time would come back with six digits, which HTML's <time> refuses."""
    grace = act.Actor(id=GRACE["id"], type="Person", preferredUsername="grace")
    note = messages.notification(act.service("notifier"), grace, created(), "Ada shared")
    published = act.encode(note)
    assert act.encode(kept(published)) == published


def test_build_summaries_speak_to_the_requester_and_about_them_to_others() -> None:
    build = builder_topics.Build(
        type="Build", id="urn:uuid:b", name="Build #3", state="failed", progress=70
    )
    ada = act.Actor(id=ADA["id"], type="Person", name="Ada Lovelace")
    grace = act.Actor(id=GRACE["id"], type="Person", name="Grace")
    assert messages.build_summary(build, ada, ada) == "Your Build #3 failed"
    assert messages.build_summary(build, ada, grace) == "Ada Lovelace’s Build #3 failed"
    nightly = builder_topics.Build(
        type="Build", id="urn:uuid:n", name="nightly", state="succeeded", progress=100
    )
    assert messages.build_summary(nightly, ada, ada) == "Your build nightly succeeded"


# --- the inbox (services/notifier/inbox.py) -------------------------------------------------


def test_an_inbox_keeps_the_newest_once_each_and_reading_marks_up_to_one(
    databases: Databases,
) -> None:
    where = databases.place("inbox")
    store = InboxStore(where).open()
    for n in range(5):
        assert store.keep("grace", f"urn:uuid:{n}", b'{"n":%d}' % n, size=3)
    assert not store.keep("grace", "urn:uuid:4", b'{"n":4}', size=3)  # a redelivery: kept once
    store.keep("ada", "urn:uuid:a", b'{"a":1}', size=3)
    assert store.newest("grace", 10) == [b'{"n":4}', b'{"n":3}', b'{"n":2}']  # 3 kept
    assert (store.counts("grace").total, store.counts("grace").unread) == (3, 3)
    assert store.mark_read("grace", "urn:uuid:3") == 2  # it and every older one
    assert store.counts("grace").unread == 1  # the newest: unread ones are always the newest
    assert store.mark_read("grace", "urn:uuid:gone") == 1  # one no longer kept: all
    assert store.counts("grace").unread == 0
    assert store.counts("ada").unread == 1  # nobody else's
    store.close()
    again = InboxStore(where).open()  # a restart (or another machine): still read
    assert (again.counts("grace").total, again.counts("grace").unread) == (3, 0)
    again.close()


async def test_the_notes_of_one_turn_commit_together_and_the_inbox_stays_bounded(
    databases: Databases,
) -> None:
    store = InboxStore(databases.place("inbox")).open()
    try:
        first = [Note("grace", f"urn:uuid:{n}", b"%d" % n) for n in range(4)]
        again = [Note("grace", "urn:uuid:3", b"3"), Note("ada", "urn:uuid:a", b"a")]
        news = await asyncio.gather(store.add(first, 3), store.add(again, 3))
        assert list(news) == [[True] * 4, [False, True]] and store._group.commits == 1
        assert store.newest("grace", 10) == [b"3", b"2", b"1"]
        assert store.counts("ada") == Counts(1, 1)
    finally:
        store.close()


# The inbox as 8d385c8 made it (services/notifier/inbox.py's SCHEMA).
MADE_BY_8D385C8 = """
CREATE TABLE IF NOT EXISTS notes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    person TEXT NOT NULL,
    id     TEXT NOT NULL,
    note   BLOB NOT NULL,
    read   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (person, id)
);
CREATE INDEX IF NOT EXISTS notes_person ON notes (person, seq);
"""


def test_an_inbox_made_by_8d385c8_is_adopted_nothing_lost(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MADE_BY_8D385C8)
    for n in range(4):
        old.execute(
            "INSERT INTO notes (person, id, note, read) VALUES ('grace', ?, ?, ?)",
            (f"urn:uuid:{n}", b'{"n":%d}' % n, int(n < 2)),
        )
    old.commit()
    old.close()
    store = InboxStore(Place.file(path)).open()
    try:
        assert store.counts("grace") == Counts(4, 2)
        assert store.newest("grace", 2) == [b'{"n":3}', b'{"n":2}']
        assert not store.keep("grace", "urn:uuid:1", b"again", size=4)  # still known
        assert store.keep("grace", "urn:uuid:4", b'{"n":4}', size=4)  # the oldest goes
        assert store.newest("grace", 10)[-1] == b'{"n":1}'
        assert store.mark_read("grace", "urn:uuid:3") == 2 and store.counts("grace").unread == 1
    finally:
        store.close()


def test_a_follow_tells_the_person_followed() -> None:
    follow = act.new("Follow", ADA, GRACE)
    decoded = gateway_topics.PERSON_FOLLOWED.codec.decode(act.encode(follow))
    assert messages.follow_summary(decoded) == "Ada Lovelace followed you"


def test_a_read_made_again_has_the_same_inbox_state_id_unless_the_counts_moved() -> None:
    """A re-run (a crash before the read's ack) that finds a new notification makes a newer
    state: under the first one's id, subscribers would park it as another activity."""
    first = messages.inbox_state_id("urn:uuid:read", 3, 0)
    assert messages.inbox_state_id("urn:uuid:read", 3, 0) == first
    assert messages.inbox_state_id("urn:uuid:read", 4, 1) != first
    assert messages.inbox_state_id("urn:uuid:other", 3, 0) != first
