"""Shared bench plumbing: a private broker, medians, a table printer."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from dovecote.tools.broker import PrivateMosquitto

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


@contextmanager
def private_broker() -> Iterator[PrivateMosquitto]:
    with tempfile.TemporaryDirectory(prefix="dovecote-bench-") as d:
        b = PrivateMosquitto(Path(d)).start()
        try:
            yield b
        finally:
            b.stop()


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def machine() -> str:
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False)
    version = mosq.stdout.splitlines()[0].replace("mosquitto version ", "") if mosq.stdout else "?"
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · Mosquitto {version}"
    )


def heading(title: str) -> None:
    print(f"\n== {title}")
