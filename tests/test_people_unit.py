"""The gateway's accounts (services/gateway/accounts/people.py): passwords, seeding, follows,
tokens."""

from __future__ import annotations

import time

import pytest

from dovecote_testing.plugin import Databases
from services.gateway.accounts import credentials, people
from services.gateway.accounts.credentials import Refused
from services.gateway.accounts.people import People
from tests.fixtures import kept


def test_a_password_is_stored_as_argon2id_and_a_stranger_costs_as_much_as_a_wrong_one() -> None:
    stored = credentials.hash_password("correct horse")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert credentials.check_password(stored, "correct horse")
    assert not credentials.check_password(stored, "wrong horse")
    started = time.perf_counter()
    assert not credentials.check_password(stored, "wrong horse")
    wrong = time.perf_counter() - started
    started = time.perf_counter()
    assert not credentials.check_password(None, "correct horse")  # no such person
    nobody = time.perf_counter() - started
    assert nobody > wrong / 4  # an Argon2 run too, not an instant "no"
    for bad in ("short", "x" * (credentials.PASSWORD_MAX + 1)):
        with pytest.raises(Refused):
            credentials.hash_password(bad)


def test_seeding_creates_once_and_an_unfollow_survives_a_restart(databases: Databases) -> None:
    path = databases.place("accounts")
    store = People(path).open()
    assert store.seed(people.DEMO_PEOPLE, "h1") == ["ada", "grace", "linus"]
    assert [p.id for p in store.followers("ada")] == ["grace", "linus"]
    assert store.unfollow("linus", "ada")
    store.close()
    store = People(path).open()
    assert store.seed(people.DEMO_PEOPLE, "h2") == []  # nobody new
    assert [p.id for p in store.followers("ada")] == ["grace"]  # the unfollow stayed
    assert store.password_hash("ada") == "h2"  # the demo password is the run's
    with pytest.raises(Refused, match="yourself"):
        store.follow("ada", "ada")
    assert store.follow("linus", "ada") and not store.follow("linus", "ada")
    with pytest.raises(Refused, match="no such person 'nobody'"):
        store.follow("linus", "nobody")
    store.close()


def test_names_are_checked_and_taken_names_refused(databases: Databases) -> None:
    store = People(databases.place("accounts")).open()
    store.add("kim", "  Kim\u202e  Lee\t", "h")
    assert store.get("kim") == credentials.Person("kim", "Kim Lee")  # bidi override gone
    for bad in ("Kim", "../kim", "", "a b", "x" * 65):
        with pytest.raises(Refused, match="user name"):
            store.add(bad, "K", "h")
    with pytest.raises(Refused, match="taken"):
        store.add("kim", "Another", "h")
    with pytest.raises(Refused, match="display name"):
        store.add("lee", "\u200b\u202e", "h")
    store.close()


def test_a_token_finds_its_person_until_revoked_and_only_its_digest_is_kept(
    databases: Databases,
) -> None:
    store = People(databases.place("accounts")).open()
    store.add("kim", "Kim", "h")
    record, token = store.new_token("kim", "laptop")
    assert token.startswith(f"dct_{record.id}_")
    assert store.by_token(token) == credentials.Person("kim", "Kim")
    secret = token.split("_", 2)[2]  # the secret may hold "_" itself (url-safe base64)
    stored = kept(store, databases)  # the WAL too
    assert record.id.encode() in stored and secret.encode() not in stored
    assert store.by_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.by_token("dct_nothing") is None
    assert [t.last_used is not None for t in store.tokens("kim")] == [True]
    assert not store.revoke("someone-else", record.id)
    assert store.revoke("kim", record.id)
    assert store.by_token(token) is None
    store.close()
