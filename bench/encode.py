"""What a typed payload costs to publish: making and encoding one build update as a Struct
(``builder_topics.BuildUpdated(**act.envelope(), ...)``, ``act.encode``) against the
hand-made dict it replaced (``act.new``, ``orjson.dumps``). Median of 15 runs of 20,000
each, one core.

    .venv/bin/python -m bench.encode
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable

import orjson

from dovecote import activity as act
from services.builder import topics as builder_topics

RUNS, EACH = 15, 20_000


def median_us(fn: Callable[[], object]) -> float:
    return statistics.median(timeit.repeat(fn, number=EACH, repeat=RUNS)) / EACH * 1e6


def main() -> None:
    ada = act.Actor(
        type="Person",
        id="http://localhost:8080/users/ada",
        name="Ada",
        preferredUsername="ada",
        followers="http://localhost:8080/users/ada/followers",
    )
    build = builder_topics.Build(
        type="Build",
        id=act.new_id(),
        name="Build #7",
        state="running",
        progress=40,
        startTime=act.instant(),
        attributedTo=ada,
        worker="builder.1",
    )
    builder = act.service("builder")
    typed = builder_topics.BuildUpdated(
        **act.envelope(), type="Update", actor=builder, object=build, context=act.new_id()
    )
    raw = act.to_json(typed)
    assert orjson.loads(act.encode(typed)) == raw, "the same JSON either way"
    raw_builder = act.to_json(builder)
    rows = [
        (
            "make: builder_topics.BuildUpdated(**act.envelope(), ...) / act.new(...)",
            lambda: builder_topics.BuildUpdated(
                **act.envelope(), type="Update", actor=builder, object=build, context="urn:x"
            ),
            lambda: act.new("Update", raw_builder, raw["object"], context="urn:x"),
        ),
        (
            "encode: act.encode(struct) / orjson.dumps(dict)",
            lambda: act.encode(typed),
            lambda: orjson.dumps(raw),
        ),
    ]
    for what, typed_fn, dict_fn in rows:
        print(f"{what}: {median_us(typed_fn):.2f} / {median_us(dict_fn):.2f} us")


if __name__ == "__main__":
    main()
