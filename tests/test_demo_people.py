"""The demo people's password (services/gateway/accounts/demo.py): every hash a gateway
makes has the strong parameters (argon2-cffi's RFC 9106 low-memory profile), a gateway
started as production starts it included; a hash given in ``DEMO_PASSWORD_HASH`` (the
tests' cheap one) is kept as given, and one that is not a hash of ``DEMO_PASSWORD`` is
refused."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from argon2 import Parameters, PasswordHasher, extract_parameters, profiles

from dovecote.config import ConfigError
from dovecote_testing.gateway import DEMO_PASSWORD, demo_password_hash, signed_in
from dovecote_testing.plugin import Databases, StartService
from services.gateway.accounts import credentials
from services.gateway.accounts.demo import DemoPeople
from services.gateway.accounts.people import People
from tests.fixtures import wait_http

STRONG = profiles.RFC_9106_LOW_MEMORY


def parameters(hashed: str | None) -> Parameters:
    assert hashed is not None
    return extract_parameters(hashed)


def test_every_hash_a_gateway_makes_has_the_strong_parameters() -> None:
    assert parameters(credentials.hash_password("correct horse")) == STRONG
    assert parameters(credentials._NOBODY) == STRONG  # what a stranger's sign-in costs


async def test_without_a_given_hash_the_demo_people_get_a_strong_one_kept_while_it_matches(
    databases: Databases,
) -> None:
    store = People(databases.place("accounts")).open()
    try:
        with ThreadPoolExecutor(1) as hashing:
            demo = DemoPeople({"DEMO_PASSWORD": DEMO_PASSWORD})
            assert await demo.seed(store, hashing) == ["ada", "grace", "linus"]
            made = store.password_hash("ada")
            assert parameters(made) == STRONG
            assert credentials.check_password(made, DEMO_PASSWORD)
            assert await demo.seed(store, hashing) == []  # a restart: kept, not made again
            assert store.password_hash("grace") == made
            await DemoPeople({"DEMO_PASSWORD": "another-password"}).seed(store, hashing)
            assert store.password_hash("ada") != made  # a new password: hashed anew
    finally:
        store.close()


async def test_a_given_hash_is_kept_as_given_and_the_gateway_hashes_nothing(
    databases: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = demo_password_hash()
    assert parameters(given) == profiles.CHEAPEST  # the tests' own, cheap by design

    def refused(*_: object) -> str:
        raise AssertionError("the gateway hashed a password")

    monkeypatch.setattr(credentials, "hash_password", refused)
    demo = DemoPeople({"DEMO_PASSWORD": DEMO_PASSWORD, "DEMO_PASSWORD_HASH": f" {given}\n"})
    store = People(databases.place("accounts")).open()
    try:
        with ThreadPoolExecutor(1) as hashing:
            assert await demo.seed(store, hashing) == ["ada", "grace", "linus"]
        assert {store.password_hash(p) for p in ("ada", "grace", "linus")} == {given}
    finally:
        store.close()


def test_a_given_hash_is_an_argon2_hash_of_the_demo_password() -> None:
    other = PasswordHasher.from_parameters(profiles.CHEAPEST).hash("another password")
    with pytest.raises(ConfigError, match="DEMO_PASSWORD_HASH is not an Argon2 hash"):
        DemoPeople({"DEMO_PASSWORD": DEMO_PASSWORD, "DEMO_PASSWORD_HASH": DEMO_PASSWORD})
    with pytest.raises(ConfigError, match="DEMO_PASSWORD_HASH is not a hash of DEMO_PASSWORD"):
        DemoPeople({"DEMO_PASSWORD": DEMO_PASSWORD, "DEMO_PASSWORD_HASH": other})
    with pytest.raises(ConfigError, match="DEMO_PASSWORD: a password has at least 8"):
        DemoPeople({"DEMO_PASSWORD": "short"})
    assert DemoPeople({"DEMO_PASSWORD_HASH": other}).wanted  # the hash alone will do
    assert not DemoPeople({"DEMO_PASSWORD": "", "DEMO_PASSWORD_HASH": " "}).wanted


@pytest.mark.brokers("mosquitto")  # the gateway's own hashing: any broker will do
async def test_a_gateway_started_as_production_starts_it_hashes_with_the_strong_parameters(
    start_service: StartService, service_env: dict[str, str]
) -> None:
    """No DEMO_PASSWORD_HASH, as `dovecote run` and the systemd units start a gateway: the
    demo people's hash is the gateway's own, strong, and signing in with it works."""
    assert service_env["DEMO_PASSWORD_HASH"]  # what every other test's gateway is given
    start_service("gateway", DEMO_PASSWORD_HASH="")
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz")
    async with await signed_in(url, "ada"):
        pass
    db = sqlite3.connect(Path(service_env["DOVECOTE_DATA_DIR"]) / "accounts.sqlite3")
    try:
        hashes = {row[0] for row in db.execute("SELECT password FROM people")}
    finally:
        db.close()
    assert [parameters(h) for h in hashes] == [STRONG]
