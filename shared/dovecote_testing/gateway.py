"""Signing in to the gateway from a test, as a browser or as a script would.

Every gateway a test starts (``service_env``) has the demo people (ada, grace, linus) with
``DEMO_PASSWORD`` and its own session key. Their hash is given (``DEMO_PASSWORD_HASH``,
``demo_password_hash``), made with argon2-cffi's cheapest parameters: the gateway makes none
at its start, and a demo sign-in costs no 64 MiB Argon2 run (a test run starts ~500 gateways
and signs in some hundreds of times). ``signed_in`` gives an aiohttp session that signed
in through the real form and sends ``Origin`` on every request, as a browser does (the
gateway refuses a state change without it, or without the CSRF token); ``token_for`` makes a
personal API token on the account page, as a person would for a script.
"""

from __future__ import annotations

import functools

import aiohttp
from argon2 import PasswordHasher, profiles

DEMO_PASSWORD = "demo-password-for-tests"


@functools.cache
def demo_password_hash() -> str:
    """``DEMO_PASSWORD`` hashed with the parameters argon2-cffi keeps for tests (8 KiB, one
    pass): microseconds, where the gateway's own take ~0.15 s of CPU by design."""
    return PasswordHasher.from_parameters(profiles.CHEAPEST).hash(DEMO_PASSWORD)


async def signed_in(url: str, person: str, password: str = DEMO_PASSWORD) -> aiohttp.ClientSession:
    """A client session signed in as ``person``; the caller closes it."""
    # unsafe=True: keep cookies from an IP address (the tests' 127.0.0.1).
    http = aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Origin": url.rstrip("/")}
    )
    try:
        form = {"username": person, "password": password}
        async with http.post(f"{url}/signin", data=form, allow_redirects=False) as r:
            if r.status != 303:
                raise AssertionError(f"signing in as {person}: {r.status} {await r.text()}")
    except BaseException:
        await http.close()
        raise
    return http


def cookie_header(http: aiohttp.ClientSession) -> str:
    """The session's cookies as a ``Cookie`` header (for a websocket client)."""
    return "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)


async def token_for(url: str, person: str, name: str = "test") -> str:
    """A new personal API token of ``person``, made on their account page."""
    async with await signed_in(url, person) as http:
        headers = {"Accept": "application/json"}
        async with http.post(f"{url}/account/tokens", data={"name": name}, headers=headers) as r:
            if r.status != 201:
                raise AssertionError(f"a token for {person}: {r.status} {await r.text()}")
            token: str = (await r.json())["token"]
    return token
