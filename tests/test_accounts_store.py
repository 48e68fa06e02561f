"""The accounts store's new parts (issue 21), without a broker: names people may not take,
sign-ins kept on the server, sign-in attempts per account, invitations, and the upgrade of
a store made by the last release."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from services.gateway.accounts import invites, names
from services.gateway.accounts.credentials import Refused, split_token
from services.gateway.accounts.people import People
from services.gateway.web.limits import Rate


def store(tmp_path: Path) -> People:
    people = People(tmp_path / "accounts.sqlite3").open()
    people.add("grace", "Grace Hopper", "h")
    people.add("ada", "Ada Lovelace", "h")
    return people


@pytest.mark.parametrize(
    ("user_id", "name", "why"),
    [
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
    ],
)
def test_sign_up_refuses_reserved_names_and_names_that_pass_for_another(
    tmp_path: Path, user_id: str, name: str, why: str
) -> None:
    people = store(tmp_path)
    with pytest.raises(Refused, match=why):
        people.vet(user_id, name)
    people.close()


def test_names_unlike_anyone_elses_are_taken_as_given(tmp_path: Path) -> None:
    people = store(tmp_path)
    assert people.vet("mallory", "Mallory  Doe") == ("mallory", "Mallory Doe")
    assert people.vet("grace2", "Grace Murray") == ("grace2", "Grace Murray")  # not a copy
    people.close()
    assert names.lookalike_key("Gr4ce H0pper") == names.lookalike_key("grace-hopper")
    assert names.lookalike_key("Linus") != names.lookalike_key("Linda")


def test_an_accounts_file_of_the_last_release_is_upgraded_in_place(tmp_path: Path) -> None:
    """A store made by the gateway before this change (its schema as it was): opened now,
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
    people = People(path).open()
    assert [p.id for p in people.all()] == ["grace", "ada"]
    assert people.password_hash("ada") == "h2"
    assert [p.id for p in people.followers("grace")] == ["ada"]
    assert not people.get("ada").operator  # type: ignore[union-attr]
    with pytest.raises(Refused, match="looks like Grace Hopper"):  # keys made for old rows
        people.vet("mallory", "Grace Hopper")
    assert people.signins.of("ada") == []  # the new tables are there
    people.close()
    again = People(path).open()  # a second open changes nothing
    assert [p.id for p in again.all()] == ["grace", "ada"]
    again.close()


def test_a_sign_in_counts_only_while_its_row_lives_and_its_secret_is_not_kept(
    tmp_path: Path,
) -> None:
    people = store(tmp_path)
    value = people.signins.start("ada", 3600, "10.0.0.1", "Mozilla/5.0 (X11; Linux) Firefox/130")
    handle, secret = value.split(".")
    assert people.signins.find(value, "10.0.0.1") == (handle, "ada")
    assert people.signins.find(f"{handle}.{secret[:-1]}x", None) is None  # forged
    other = people.signins.start("ada", 3600, "10.0.0.2", None)
    [newest, oldest] = people.signins.of("ada")
    assert {newest.handle, oldest.handle} == {handle, other.split(".")[0]}
    stored = b"".join(f.read_bytes() for f in tmp_path.glob("accounts.sqlite3*"))
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


def test_attempts_at_one_account_are_counted_in_a_sliding_window(tmp_path: Path) -> None:
    people = store(tmp_path)
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


def test_an_invitation_makes_one_account_before_it_expires(tmp_path: Path) -> None:
    people = store(tmp_path)
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


def test_a_token_records_where_it_was_last_used(tmp_path: Path) -> None:
    people = store(tmp_path)
    record, token = people.new_token("ada", "ci")
    assert people.by_token(token, "10.0.0.9") is not None
    [kept] = people.tokens("ada")
    assert kept.last_address == "10.0.0.9" and kept.last_used is not None
    assert people.by_token(token, "10.0.0.10") is not None  # moved: written again at once
    assert people.tokens("ada")[0].last_address == "10.0.0.10"
    assert split_token(token) is not None
    assert people.live_tokens([record.id, "000000000000"]) == {record.id}
    people.close()
