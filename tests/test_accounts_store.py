"""The accounts store's new parts (issue 21), without a broker: names people may not take,
sign-ins kept on the server, sign-in attempts per account, invitations, and the upgrade of
a store made by the last release."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from dovecote.store import Place
from dovecote_testing.plugin import Databases
from services.gateway.accounts import invites, names
from services.gateway.accounts.credentials import Refused, split_token
from services.gateway.accounts.people import People
from services.gateway.web import sessions
from services.gateway.web.limits import Rate
from tests.fixtures import kept


def store(databases: Databases) -> People:
    people = People(databases.place("accounts")).open()
    people.add("grace", "Grace Hopper", "h")
    people.add("ada", "Ada Lovelace", "h")
    return people


REFUSED_NAMES = [
    ("admin", "Admin", "reserved"),
    ("root", "Root", "reserved"),
    ("no_reply", "Mail", "reserved"),  # _ for -
    ("gr4ce", "G", "looks like Grace Hopper"),  # an id that reads as grace
    ("gr4cehopper", "Someone", "looks like Grace Hopper"),  # an id that reads as her name
    ("mallory", "Grace Hopper", "looks like Grace Hopper"),
    ("mallory", "gr4ce  h0pper", "looks like Grace Hopper"),
    ("mallory", "Grace Ho\u0440\u0440er", "looks like Grace Hopper"),  # Cyrillic er
    ("mallory", "Gráce Hopper", "looks like Grace Hopper"),  # an accent
    ("mallory", "ADA", r"looks like Ada Lovelace \(@ada\)"),  # her id as a name
    ("grace", "Grace", "taken"),
]


def test_sign_up_refuses_reserved_names_and_names_that_pass_for_another(
    databases: Databases,
) -> None:
    people = store(databases)
    for user_id, name, why in REFUSED_NAMES:  # one store for all (a PostgreSQL one each: 0.3 s)
        with pytest.raises(Refused, match=why):
            people.vet(user_id, name)
    assert people.vet("mallory", "Mallory  Doe") == ("mallory", "Mallory Doe")
    assert people.vet("grace2", "Grace Murray") == ("grace2", "Grace Murray")  # not a copy
    people.close()
    assert names.lookalike_key("Gr4ce H0pper") == names.lookalike_key("grace-hopper")
    assert names.lookalike_key("Linus") != names.lookalike_key("Linda")


def test_an_accounts_file_of_an_older_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """A store made by the gateway of the first release (its schema as it was): opened now,
    it gains its new columns and tables, and loses nothing."""
    path = tmp_path / "accounts.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT NOT NULL, password TEXT NOT NULL,
                             created TEXT NOT NULL);
        CREATE TABLE follows (follower TEXT NOT NULL, followee TEXT NOT NULL,
                              since TEXT NOT NULL, PRIMARY KEY (follower, followee));
        CREATE TABLE tokens (id TEXT PRIMARY KEY, person TEXT NOT NULL, name TEXT NOT NULL,
                             digest BLOB NOT NULL, created TEXT NOT NULL, last_used TEXT);
        INSERT INTO people VALUES ('grace', 'Grace Hopper', 'h1', '2026-11-01T00:00:00Z');
        INSERT INTO people VALUES ('ada', 'Ada Lovelace', 'h2', '2026-11-01T00:00:01Z');
        INSERT INTO follows VALUES ('ada', 'grace', '2026-11-02T00:00:00Z');
        """
    )
    old.commit()
    old.close()
    people = People(Place.file(path)).open()
    assert [p.id for p in people.all()] == ["grace", "ada"]
    assert people.password_hash("ada") == "h2"
    assert [p.id for p in people.followers("grace")] == ["ada"]
    assert not people.get("ada").operator  # type: ignore[union-attr]
    with pytest.raises(Refused, match="looks like Grace Hopper"):  # keys made for old rows
        people.vet("mallory", "Grace Hopper")
    assert people.signins.of("ada") == []  # the new tables are there
    people.close()
    again = People(Place.file(path)).open()  # a second open changes nothing
    assert [p.id for p in again.all()] == ["grace", "ada"]
    again.close()


# What the gateway of 8d385c8 (today's main, before migrations) made, statement for
# statement: people.py's SCHEMA, its ADDED_COLUMNS and INDEXES, then the tables of
# signins.py, invites.py and guesses.py.
MADE_BY_8D385C8 = """
CREATE TABLE IF NOT EXISTS people (
    id        TEXT PRIMARY KEY,   -- the user id: a topic level (check_id), /users/<id>
    name      TEXT NOT NULL,      -- display name
    password  TEXT NOT NULL,      -- Argon2id hash (PHC string)
    created   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS follows (
    follower  TEXT NOT NULL REFERENCES people (id),
    followee  TEXT NOT NULL REFERENCES people (id),
    since     TEXT NOT NULL,
    PRIMARY KEY (follower, followee)
);
CREATE INDEX IF NOT EXISTS follows_followee ON follows (followee, follower);
CREATE TABLE IF NOT EXISTS tokens (
    id        TEXT PRIMARY KEY,   -- public part, in the token itself
    person    TEXT NOT NULL REFERENCES people (id),
    name      TEXT NOT NULL,      -- what its owner called it
    digest    BLOB NOT NULL,      -- SHA-256 of the secret part
    created   TEXT NOT NULL,
    last_used TEXT
);
CREATE INDEX IF NOT EXISTS tokens_person ON tokens (person, created);
ALTER TABLE people ADD COLUMN operator INTEGER NOT NULL DEFAULT 0;
ALTER TABLE people ADD COLUMN id_key TEXT;
ALTER TABLE people ADD COLUMN name_key TEXT;
ALTER TABLE tokens ADD COLUMN last_address TEXT;
CREATE INDEX IF NOT EXISTS people_id_key ON people (id_key);
CREATE INDEX IF NOT EXISTS people_name_key ON people (name_key);
CREATE TABLE IF NOT EXISTS sessions (
    id        TEXT PRIMARY KEY,   -- the handle: public, in the cookie beside the secret
    person    TEXT NOT NULL REFERENCES people (id),
    digest    BLOB NOT NULL,      -- SHA-256 of the secret part
    created   TEXT NOT NULL,
    expires   TEXT NOT NULL,
    last_used TEXT NOT NULL,
    address   TEXT,               -- where it was last used from (the TCP peer)
    agent     TEXT                -- the browser, as it named itself (User-Agent, cut short)
);
CREATE INDEX IF NOT EXISTS sessions_person ON sessions (person, created);
CREATE INDEX IF NOT EXISTS sessions_expires ON sessions (expires);
CREATE TABLE IF NOT EXISTS invites (
    id        TEXT PRIMARY KEY,   -- public part, in the code itself
    digest    BLOB NOT NULL,      -- SHA-256 of the secret part
    made_by   TEXT NOT NULL,      -- the operator (or 'dovecote admin gateway')
    created   TEXT NOT NULL,
    expires   TEXT NOT NULL,
    used_by   TEXT,               -- the account it made, once used
    used      TEXT
);
CREATE TABLE IF NOT EXISTS guesses (
    key  TEXT NOT NULL,   -- 'account:<name tried>' or 'device:<device cookie's nonce>'
    at   REAL NOT NULL    -- when (Unix time)
);
CREATE INDEX IF NOT EXISTS guesses_key ON guesses (key, at);
CREATE INDEX IF NOT EXISTS guesses_at ON guesses (at);
"""


def test_an_accounts_file_made_by_8d385c8_is_adopted_in_place_nothing_lost(
    tmp_path: Path,
) -> None:
    path = tmp_path / "accounts.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(MADE_BY_8D385C8)
    secret = "s" * 43
    token_digest = hashlib.sha256(secret.encode()).digest()
    signin_digest = hashlib.sha256(b"cookie-secret").digest()
    old.executescript(
        """
        INSERT INTO people VALUES ('grace', 'Grace Hopper', 'h1', '2026-11-01T00:00:00Z', 1,
                                   'gracehopper', 'gracehopper');
        INSERT INTO people VALUES ('ada', 'Ada Lovelace', 'h2', '2026-11-01T00:00:01Z', 0,
                                   'ada', 'adalovelace');
        INSERT INTO follows VALUES ('ada', 'grace', '2026-11-02T00:00:00Z');
        INSERT INTO invites VALUES ('0123456789ab', x'00', 'grace', '2026-11-01T00:00:00Z',
                                    '2999-01-01T00:00:00Z', NULL, NULL);
        """
    )
    now = time.time()
    old.execute(
        "INSERT INTO tokens VALUES ('aaaaaaaaaaaa', 'ada', 'ci', ?, '2026-11-03T00:00:00Z', "
        "NULL, NULL)",
        (token_digest,),
    )
    old.execute(
        "INSERT INTO sessions VALUES ('0123456789abcdef', 'ada', ?, '2026-11-03T00:00:00Z', "
        "'2999-01-01T00:00:00Z', '2026-11-03T00:00:00Z', '10.0.0.1', 'curl/8')",
        (signin_digest,),
    )
    old.executemany("INSERT INTO guesses VALUES ('account:ada', ?)", [(now,), (now,)])
    old.commit()
    old.close()

    people = People(Place.file(path)).open()
    assert [(p.id, p.operator) for p in people.all()] == [("grace", True), ("ada", False)]
    assert [p.id for p in people.followers("grace")] == ["ada"]
    assert people.by_token(f"dct_aaaaaaaaaaaa_{secret}") == people.get("ada")
    assert people.signins.find("0123456789abcdef.cookie-secret", "10.0.0.1") == (
        "0123456789abcdef",
        "ada",
    )
    assert [i.id for i in people.invites.open()] == ["0123456789ab"]
    # Its two guesses still count, and reservations go on from their numbers.
    assert people.guesses.reserve("account:ada", Rate(3, 60))[0] == 3
    assert people.guesses.reserve("account:ada", Rate(3, 60))[0] is None
    with pytest.raises(Refused, match="looks like Grace Hopper"):
        people.vet("mallory", "Grace Hopper")
    people.close()
    again = People(Place.file(path)).open()  # at head: nothing to do
    assert again.count() == 2
    again.close()


def test_a_sign_in_counts_only_while_its_row_lives_and_its_secret_is_not_kept(
    databases: Databases,
) -> None:
    people = store(databases)
    value = people.signins.start("ada", 3600, "10.0.0.1", "Mozilla/5.0 (X11; Linux) Firefox/130")
    handle, secret = value.split(".")
    assert people.signins.find(value, "10.0.0.1") == (handle, "ada")
    assert people.signins.find(f"{handle}.{secret[:-1]}x", None) is None  # forged
    other = people.signins.start("ada", 3600, "10.0.0.2", None)
    [newest, oldest] = people.signins.of("ada")
    assert {newest.handle, oldest.handle} == {handle, other.split(".")[0]}
    stored = kept(people, databases)
    assert handle.encode() in stored and secret.encode() not in stored
    assert people.signins.live([handle, "0" * 16]) == {handle}
    assert people.signins.end(handle, "grace") is False  # not hers
    assert people.signins.end(handle, "ada")
    assert people.signins.find(value, None) is None  # every copy of the cookie: dead
    assert people.signins.end_all("ada") == [other.split(".")[0]]
    assert people.signins.of("ada") == []
    expired = people.signins.start("ada", 1, None, None)
    time.sleep(1.1)
    assert (
        people.signins.find(expired, None) is None
        and people.signins.live([expired.split(".")[0]]) == set()
    )
    people.close()


def test_attempts_at_one_account_are_counted_in_a_sliding_window(databases: Databases) -> None:
    people = store(databases)
    rate = Rate(3, 1.0)
    taken = [people.guesses.reserve("account:ada", rate) for _ in range(3)]
    assert all(r is not None and wait == 0 for r, wait in taken)
    refused, wait = people.guesses.reserve("account:ada", rate)
    assert refused is None and 0 < wait <= 1.0
    assert people.guesses.reserve("account:grace", rate)[0] is not None  # per account
    people.guesses.forgive(taken[0][0])  # the right password: that one was no guess
    assert people.guesses.reserve("account:ada", rate)[0] is not None
    assert people.guesses.reserve("account:ada", rate)[0] is None
    time.sleep(1.05)  # the window slides
    assert people.guesses.reserve("account:ada", rate)[0] is not None
    assert people.guesses.reserve("account:ada", None) == (None, 0.0)  # no limit set
    people.close()


def test_an_invitation_makes_one_account_before_it_expires(databases: Databases) -> None:
    people = store(databases)
    record, code = people.invites.make("grace")
    assert code.startswith(f"dci_{record.id}_") and [i.id for i in people.invites.open()] == [
        record.id
    ]
    assert people.invites.check(code) == record.id
    for wrong in ("", "dci_x", code[:-1] + ("A" if code[-1] != "A" else "B")):
        with pytest.raises(invites.Refused, match="not one of ours"):
            people.invites.check(wrong)
    assert people.invites.use(record.id, "mallory")
    assert not people.invites.use(record.id, "eve")  # once
    with pytest.raises(invites.Refused, match="used already"):
        people.invites.check(code)
    gone, gone_code = people.invites.make("grace", days=0)
    with pytest.raises(invites.Refused, match="expired"):
        people.invites.check(gone_code)
    assert people.invites.withdraw(gone.id) and people.invites.open() == []
    with pytest.raises(Exception, match="SIGNUP must be one of"):
        invites.signup_mode("everyone")
    people.close()


def test_a_token_records_where_it_was_last_used(databases: Databases) -> None:
    people = store(databases)
    record, token = people.new_token("ada", "ci")
    assert people.by_token(token, "10.0.0.9") is not None
    [kept] = people.tokens("ada")
    assert kept.last_address == "10.0.0.9" and kept.last_used is not None
    assert people.by_token(token, "10.0.0.10") is not None  # moved: written again at once
    assert people.tokens("ada")[0].last_address == "10.0.0.10"
    assert split_token(token) is not None
    assert people.live_tokens([record.id, "000000000000"]) == {record.id}
    people.close()


def test_gateways_guessing_at_once_never_pass_the_limit_together(databases: Databases) -> None:
    """Eight gateways (each its own store and connections) reserve attempts at one account
    at the same moment: exactly the limit pass, on both databases."""
    stores = [People(databases.place("accounts")).open() for _ in range(8)]
    rate, start, passed = Rate(5, 60), threading.Barrier(8), []

    def guess(people: People) -> None:
        start.wait()
        for _ in range(2):
            reservation, _wait = people.guesses.reserve("account:ada", rate)
            if reservation is not None:
                passed.append(reservation)

    threads = [threading.Thread(target=guess, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(passed) == 5 and len(set(passed)) == 5
    for people in stores:
        people.close()


def test_the_session_key_is_made_once_and_read_by_every_gateway(databases: Databases) -> None:
    first = People(databases.place("accounts")).open()
    second = People(databases.place("accounts")).open()  # another gateway, another machine
    key = first.shared_key(sessions.SHARED_KEY, sessions.new_key)
    assert sessions.check_key(key) == key
    assert second.shared_key(sessions.SHARED_KEY, sessions.new_key) == key  # not its own
    first.close()
    second.close()
