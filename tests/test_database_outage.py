"""The shared database down for 10 s during uploads: clear 503s, nothing acknowledged that was
not stored, and everything catches up when it is back.

The federation's stores on a private PostgreSQL of the test's own (``DATABASE_URL``), which
the test stops (a clean shutdown: every connection refused) and starts again. Uploads come
through the gateway's API and builds' results straight onto the bus, all along: while the
database is down the gateway answers 503 (never a 500, never a hang), and the workers keep
the messages they cannot store unacknowledged, trying again until it is back.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dovecote.store import Place
from dovecote_testing.plugin import Probe, StartService
from dovecote_testing.postgres import PrivatePostgres
from tests.chaos import NO_RATE_LIMITS, Traffic, record, settle
from tests.fixtures import wait_http

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.brokers("mosquitto")]

SERVICES = ("resizer", "notifier", "points", "gateway")
DOWN = 10.0  # seconds


@pytest.fixture
def own_postgres() -> Iterator[PrivatePostgres]:
    folder = Path(tempfile.mkdtemp(prefix="dovecote-pg-outage-"))
    server = PrivatePostgres(folder).start()
    yield server
    server.stop("immediate")
    shutil.rmtree(folder, ignore_errors=True)


async def test_the_database_down_for_10_s_during_uploads_loses_nothing(
    own_postgres: PrivatePostgres,
    start_service: StartService,
    service_env: dict[str, str],
    probe: Probe,
) -> None:
    database = own_postgres.new_database("outage")
    env = {
        "DATABASE_URL": database,
        "DOVECOTE_SERVICE_TOKEN": secrets.token_urlsafe(24),
        "RESIZER_THREADS": "2",
        **NO_RATE_LIMITS,
    }
    for name in SERVICES:
        start_service(name, **env)
    url = service_env["PUBLIC_URL"]
    await wait_http(f"{url}/healthz", 60)
    for name in SERVICES:
        await probe.wait_online(name, timeout=60)

    traffic = Traffic(url, probe)
    await traffic.prepare()
    flowing = asyncio.get_running_loop().create_task(traffic.run(DOWN + 6, 8, 2))
    await asyncio.sleep(2)
    before = len(traffic.uploads)
    await asyncio.to_thread(own_postgres.stop, "fast")
    await asyncio.sleep(DOWN)
    during = len(traffic.uploads) - before
    await asyncio.to_thread(own_postgres.start)
    await flowing

    fault = f"the shared PostgreSQL stopped for {DOWN:.0f} s during uploads"
    where = Place.postgres(database, "points")
    accounts = await settle(traffic, probe, where, fault, 60, tweets=False)
    record(accounts.awards, accounts.thumbnails, accounts.notifications)
    for row in (accounts.awards, accounts.thumbnails, accounts.notifications):
        assert row.lost == 0 and row.duplicated == 0, row
    # Refused while it was down, and said so: 503 each, no other error.
    assert traffic.refused > 0 and set(traffic.statuses) == {503}, traffic.statuses
    assert len(traffic.uploads) > before + during, "no upload after the database came back"
    print(
        f"\n{fault}: {len(traffic.uploads)} uploads answered 201, {traffic.refused} answered "
        f"503 while it was down, {len(traffic.builds)} builds; nothing lost or doubled"
    )
