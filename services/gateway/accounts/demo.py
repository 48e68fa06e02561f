"""The demo people (ada, grace, linus), made by a gateway when ``DEMO_PASSWORD`` is set.

Their password's hash is the gateway's own, made with ``credentials``' parameters: one
Argon2 run at a start, none when the one stored still matches. Or it is given, made
elsewhere, in ``DEMO_PASSWORD_HASH`` (an Argon2 hash of ``DEMO_PASSWORD``), and kept as it
is: the gateway makes none. The test plugin gives one made with argon2-cffi's cheapest
parameters, so that a test's gateway and each demo sign-in cost no 64 MiB hash (~0.15 s of
CPU each, a thousand times in a test run). What a gateway makes itself, sign-ups and new
passwords, always has the strong parameters (tests/test_people_unit.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import Executor

from argon2 import extract_parameters
from argon2.exceptions import InvalidHashError

from dovecote.config import ConfigError
from services.gateway.accounts import credentials, people
from services.gateway.accounts.people import People


class DemoPeople:
    """What the environment says of the demo people; ``seed`` makes them."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.password = env.get("DEMO_PASSWORD", "")
        self.given_hash = env.get("DEMO_PASSWORD_HASH", "").strip()
        if self.password:
            try:
                credentials.valid_password(self.password)
            except credentials.Refused as exc:
                raise ConfigError(f"DEMO_PASSWORD: {exc}") from None
        if self.given_hash:
            try:
                extract_parameters(self.given_hash)
            except InvalidHashError:
                raise ConfigError("DEMO_PASSWORD_HASH is not an Argon2 hash") from None
            if self.password and not credentials.check_password(self.given_hash, self.password):
                raise ConfigError("DEMO_PASSWORD_HASH is not a hash of DEMO_PASSWORD")

    @property
    def wanted(self) -> bool:
        return bool(self.password or self.given_hash)

    async def seed(self, store: People, hashing: Executor) -> list[str]:
        """Every demo person exists, with the password; the ids of those made now."""
        return store.seed(people.DEMO_PEOPLE, self.given_hash or await self._hash(store, hashing))

    async def _hash(self, store: People, hashing: Executor) -> str:
        """Made once for the three (or the one stored kept while it still matches). A fresh
        store has no hash to check: nobody is signing in, there is no timing to hide."""
        loop = asyncio.get_running_loop()
        stored = store.password_hash(people.DEMO_PEOPLE[0]["id"])
        if stored is not None and await loop.run_in_executor(
            hashing, credentials.check_password, stored, self.password
        ):
            return stored
        return await loop.run_in_executor(hashing, credentials.hash_password, self.password)
