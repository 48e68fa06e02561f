"""Hostile inputs for the fuzz run (tests/test_fuzz.py), made by hypothesis.

Hypothesis is the generator here, not the runner: ``corpus()`` runs a ``@given`` function
that only collects what it is given, with a seed, and the test sends the whole corpus to
real processes. Shrinking a live federation's failure is not practical; a failing input is
reported as it was sent, with the seed that makes the same corpus again.

Every bus payload is invalid for *every* payload type by construction (broken JSON, not an
object, or an AS2 envelope with one required property broken), so the only right answer of
a service is to reject it with a reason; and checked (``accepted_somewhere``): hypothesis
also draws strings from the code's own literals, which once made "broken" envelopes valid.
That is also why a seed draws the same corpus only from the same code (the same commit).

- ``FUZZ_EXAMPLES``: how many inputs in all (default 10,000: what ``make test`` runs);
- ``FUZZ_SEED``: an integer (default 6, so runs repeat) or ``random``; always printed.
"""

from __future__ import annotations

import functools
import os
import random
import re
import string
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as seeded
from hypothesis import strategies as st

from dovecote import activity as act
from dovecote import topics
from dovecote.tools import manifest

T = TypeVar("T")
DEFAULT_EXAMPLES = 10_000
DEFAULT_SEED = 6

# The registry's IRI rule (shared/dovecote/activity.py): what does NOT match it is a hostile id.
_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")


def examples() -> int:
    raw = os.environ.get("FUZZ_EXAMPLES", "").strip()
    return int(raw) if raw else DEFAULT_EXAMPLES


def fuzz_seed() -> int:
    raw = os.environ.get("FUZZ_SEED", "").strip()
    if raw == "random":
        return random.SystemRandom().randrange(2**32)
    return int(raw) if raw else DEFAULT_SEED


def corpus(strategy: st.SearchStrategy[T], n: int, seed: int) -> list[T]:
    """``n`` values drawn by hypothesis from ``strategy``, the same ones for the same seed."""
    out: list[T] = []
    round_ = 0
    while len(out) < n:  # hypothesis stops early when it believes a space is exhausted

        @seeded(seed + round_)
        @settings(
            max_examples=n - len(out),
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def collect(value: T) -> None:
            out.append(value)

        collect()
        round_ += 1
    return out[:n]


def corpus_of(name: str, n: int, seed: int) -> list[Any]:
    """``corpus()`` of the strategy named ``name`` in this module (for another process)."""
    strategy: st.SearchStrategy[Any] = globals()[name]
    return corpus(strategy, n, seed)


def weighted(*branches: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the branches, each ``weight`` times as likely (cheap ones often, huge rarely)."""
    pool = [s for weight, s in branches for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


# --- text and JSON ----------------------------------------------------------------------------

NASTY = [
    "",
    ".",
    "..",
    "../../etc/passwd",
    "/",
    "+",
    "#",
    "a/+/#",
    "$SYS/broker",
    "$share/x/#",
    "\x00",
    "\u202e\u0645\u0631\u062d\u0628\u0627",
    "💥" * 40,
    "%2e%2e%2f%2e%2e%2f",
    "<script>alert(1)</script>",
    "'; DROP TABLE letters;--",
    "{{7*7}}",
    "\r\nX-Injected: 1",
    "A" * 5000,
    "ada\x00grace",
    "CON",
    "ａｄａ",  # fullwidth
]
nasty_text = st.sampled_from(NASTY) | st.text(max_size=80)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | nasty_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=8,
)


def _nest(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth  # never closed


deep = st.builds(_nest, st.integers(1_500, 60_000), st.sampled_from(["array", "object", "open"]))
hostile_ids = (
    st.sampled_from(NASTY)
    | st.text(max_size=60).filter(lambda s: not _IRI.match(s))
    | st.builds(lambda s: "urn:" + s + " " + s, st.text(max_size=20))  # whitespace in an IRI
    | st.builds(lambda n: "urn:" + "x" * n, st.integers(2049, 5000))  # over the IRI limit
)
not_a_string = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.lists(scalars)
    | (st.dictionaries(st.text(max_size=5), scalars, max_size=3))
)


# --- bus payloads -------------------------------------------------------------------------


def envelope() -> dict[str, Any]:
    """A well-formed AS2 activity, before one of its required properties is broken.
    Fixed id and time: the same seed makes the same bytes."""
    return {
        "@context": act.AS_CONTEXT,
        "id": "urn:uuid:00000000-0000-4000-8000-000000000006",
        "type": "Create",
        "actor": {"type": "Person", "id": "http://localhost/users/ada", "name": "Ada"},
        "object": {"type": "Note", "content": "hello"},
        "published": "2026-11-28T00:00:00.000Z",
    }


def _broken(change: Callable[[dict[str, Any]], None]) -> bytes:
    a = envelope()
    change(a)
    return orjson.dumps(a)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda a: a.__setitem__(key, value)


def _set_actor(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda a: a["actor"].__setitem__(key, value)


def _nested_in(field: str, payload: bytes) -> bytes:
    base = orjson.dumps({**envelope(), field: 0})
    return base.replace(f'"{field}":0'.encode(), f'"{field}":'.encode() + payload, 1)


REQUIRED = ["@context", "id", "type", "actor", "published"]

broken_as2 = weighted(
    (3, st.builds(lambda v: _broken(_set("id", v)), hostile_ids)),
    (2, st.builds(lambda v: _broken(_set("id", v)), not_a_string)),
    (2, st.builds(lambda v: _broken(_set_actor("id", v)), hostile_ids)),
    (1, st.builds(lambda v: _broken(_set_actor("type", v)), nasty_text)),
    (1, st.builds(lambda v: _broken(_set("actor", v)), not_a_string)),
    (2, st.builds(lambda k: _broken(lambda a: a.pop(k)), st.sampled_from(REQUIRED))),
    (
        1,
        st.builds(
            lambda v: _broken(_set("@context", v)),
            nasty_text | st.lists(nasty_text, max_size=3),
        ),
    ),
    (1, st.builds(lambda v: _broken(_set("type", v)), not_a_string)),
    (1, st.builds(lambda n: _broken(_set("type", "Create" * n)), st.integers(34, 2000))),
    (
        2,
        st.builds(
            lambda v: _broken(_set("published", v)),
            nasty_text | st.sampled_from(["2020-01-01T00:00:00", "yesterday", "9999-99-99"]),
        ),
    ),
    (1, st.builds(lambda n: _broken(_set("summary", "s" * n)), st.integers(4097, 60_000))),
    (
        1,
        st.builds(
            lambda f, d: _nested_in(f, d), st.sampled_from(["object", "target", "result"]), deep
        ),
    ),
)

MAX_PAYLOAD = 256 * 1024  # the services' DOVECOTE_MAX_PAYLOAD default
# Over the services' limit but under the broker's 1 MiB packet limit; raw bytes that JSON
# must escape (control characters: 6 bytes each in a dead letter's content) included.
huge = st.builds(
    lambda ch, n: (ch * n)[:600_000],
    st.sampled_from([b"a", b"\x01", b'"', b"\\", "💥".encode(), b"\xff", b"{"]),
    st.integers(MAX_PAYLOAD - 1024, MAX_PAYLOAD + 64 * 1024),
)


@functools.cache
def payload_types() -> list[act.Codec]:
    """The generic activity (what a filter like ``events/#`` takes off the registry) and
    every payload type of the registry, the services' own topics included."""
    manifest.load()  # the whole registry
    kinds = {e.codec.kind for e in topics.all_topics()} | {act.Activity}
    return [act.Codec(k) for k in sorted(kinds, key=lambda k: k.__name__)]


def accepted_somewhere(payload: bytes) -> bool:
    """Whether some payload type takes it: then it is an activity, not a hostile input.
    Issue 18: an actor of type "Application" and a `published` of the envelope's own
    value, both strings hypothesis took from the code, made "broken" envelopes valid."""
    if not payload.lstrip().startswith(b"{"):
        return False  # every payload type is a JSON object
    for codec in payload_types():
        try:
            codec.decode(payload)
        except act.InvalidActivity:
            continue
        return True
    return False


bus_payloads = weighted(
    (2, st.just(b"")),
    (8, st.binary(max_size=600)),
    (8, st.text(max_size=300).map(str.encode)),  # unicode text: at most a JSON scalar
    (8, json_values.filter(lambda v: not isinstance(v, dict)).map(orjson.dumps)),
    (8, st.dictionaries(nasty_text, json_values, max_size=6).map(orjson.dumps)),  # not AS2
    (4, deep),
    (30, broken_as2),
    (1, huge),
).filter(lambda p: not accepted_somewhere(p))

# Topic levels a publisher may legally send: no + # or NUL, no control characters or
# noncharacters (Mosquitto disconnects the sender of those: no service ever sees them).
level_text = st.text(
    st.characters(blacklist_characters="+#/", blacklist_categories=["Cc", "Cs", "Cn"]),
    max_size=20,
)
hostile_levels = st.sampled_from(["", ".", "..", "ÄDA", "a b", "$x", "ada", "x" * 70]) | level_text


# --- HTTP ---------------------------------------------------------------------------------

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "PROPFIND"]
header_text = st.text(alphabet=string.printable.strip() + " \t", max_size=80)  # no CR, LF, VT, FF
path_values = (
    st.sampled_from(NASTY).map(lambda s: quote(s, safe=""))
    | st.sampled_from(
        ["..%2f..%2fetc%2fpasswd", "%2e%2e", "%00", ";x=1", "a%", "%zz", "0", "-1", "99999999999"]
    )
    | level_text.map(lambda s: quote(s, safe=""))
)


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str) -> bytes:
    out = b""
    for name, filename, body in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += body + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


multipart_bodies = st.builds(
    multipart,
    st.lists(
        st.tuples(
            st.sampled_from(["file", "title", "x", "", "file\x00"]) | header_text,
            st.none() | header_text,
            st.binary(max_size=400),
        ),
        max_size=3,
    ),
    st.sampled_from(["b0undary", "x"]),
)

bodies = weighted(
    (3, st.none()),
    (3, st.binary(max_size=500)),
    (4, json_values.map(orjson.dumps)),
    (
        2,
        st.dictionaries(st.sampled_from(["shouldFail", "id", "command", "x"]), json_values).map(
            orjson.dumps
        ),
    ),
    (3, multipart_bodies),
    (1, deep),
    (1, st.integers(17_000, 200_000).map(lambda n: b"x" * n)),  # over the 16 KiB bound
)

content_types = (
    st.none()
    | st.sampled_from(
        [
            "application/json",
            "application/json; charset=latin-1",
            "multipart/form-data; boundary=b0undary",
            "multipart/form-data; boundary=x",
            "multipart/form-data",
            "image/png",
            "image/jpeg",
            "text/plain",
            "application/x-www-form-urlencoded",
            "garbage/;;;",
        ]
    )
    | header_text
)

http_requests = st.fixed_dictionaries(
    {
        "route": st.integers(0, 10_000),  # picks a route modulo how many there are
        "method": st.none() | st.sampled_from(METHODS),  # None: the route's own method
        "params": st.lists(path_values, min_size=3, max_size=3),
        "suffix": st.sampled_from(["", "", "", "/", "/..", "/x/y", "//", "%2f.."]),
        "query": st.lists(
            st.tuples(
                st.sampled_from(["as", "resume", "since", "after", "x", "", "as[]"]) | header_text,
                nasty_text,
            ),
            max_size=4,
        ),
        "content_type": content_types,
        "origin": st.none()
        | st.sampled_from(["http://evil.example", "null", "file://"])
        | header_text,
        "authorization": st.none()
        | st.sampled_from(["Bearer", "Bearer ", "Basic YWRhOmFkYQ==", "TOKEN"])
        | header_text.map(lambda s: "Bearer " + s),
        "cookie": st.none() | header_text.map(lambda s: "dovecote_session=" + s) | header_text,
        "host": weighted(
            (8, st.none()),
            (1, st.sampled_from(["evil.example", "127.0.0.1", "localhost:1", ""]) | header_text),
        ),
        "body": bodies,
    }
)

raw_requests = weighted(
    (3, st.binary(min_size=1, max_size=300)),
    (
        3,
        st.builds(
            lambda m, p, v: f"{m} {p} {v}\r\nHost: x\r\n\r\n".encode("utf-8", "surrogatepass"),
            st.sampled_from(METHODS) | header_text,
            st.sampled_from(["/", "/healthz", "*", "http://evil/", "/../../", ""]) | header_text,
            st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/9.9", "HTTP/1.1x", ""]),
        ),
    ),
    (
        2,
        st.builds(
            lambda name, value: (
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + name + b": " + value + b"\r\n\r\n"
            ),
            st.binary(min_size=1, max_size=40),
            st.binary(max_size=200),
        ),
    ),
    (
        1,
        st.builds(
            lambda n: b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * n + b"\r\n\r\n",
            st.integers(9_000, 60_000),
        ),
    ),
    (
        2,
        st.builds(
            lambda chunks: (
                b"POST /api/builds HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunks
            ),
            st.binary(max_size=100)
            | st.sampled_from([b"zz\r\n{}\r\n0\r\n\r\n", b"-1\r\n", b"fffffffffffffffff\r\n"]),
        ),
    ),
    (
        1,
        st.builds(
            lambda cl: (
                b"POST /api/builds HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + cl + b"\r\n\r\n{}"
            ),
            st.sampled_from(
                [b"-1", b"abc", b"1, 2", b"99999999999999999999", b"2\r\nContent-Length: 3"]
            ),
        ),
    ),
)


# --- websocket ----------------------------------------------------------------------------

WS_LIMIT = 16 * 1024  # the gateway's max_msg_size


def _never_valid(body: dict[str, Any]) -> dict[str, Any]:
    """A command-shaped object that still breaks a rule (an unknown field at least)."""
    return {**body, "fuzz": True} if body.get("command") in ("build.start", "build.stop") else body


ws_text = weighted(
    (4, nasty_text),
    (4, json_values.map(lambda v: orjson.dumps(v).decode())),
    (
        5,
        st.fixed_dictionaries(
            {"command": st.sampled_from(["build.start", "build.stop", "", "x"]) | not_a_string},
            optional={
                "shouldFail": json_values,
                "id": json_values,
                "extra": json_values,
            },
        ).map(lambda d: orjson.dumps(_never_valid(d)).decode()),
    ),
    (1, st.builds(lambda d: _nest(d, "array").decode(), st.integers(1_000, 8_000))),
)
ws_frames = weighted(
    (8, ws_text.map(lambda t: ("text", t.encode("utf-8", "surrogatepass")))),
    (3, st.binary(max_size=400).map(lambda b: ("binary", b))),
    (1, st.integers(WS_LIMIT + 1, 100_000).map(lambda n: ("text", b"x" * n))),
)
ws_connects = st.fixed_dictionaries(
    {
        "query": st.lists(
            st.tuples(
                st.sampled_from(["as", "resume", "since", "after", "x"]) | header_text, nasty_text
            ),
            max_size=3,
        ),
        "origin": st.none() | st.sampled_from(["http://evil.example", "null"]) | header_text,
        "cookie": st.none() | header_text.map(lambda s: "dovecote_session=" + s),
    }
)
