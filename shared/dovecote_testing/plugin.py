"""Test helpers on real things: a private broker, services as processes, a bus probe.

Also a pytest plugin (``pytest_plugins = ["dovecote_testing.plugin"]``) with the fixtures:

- ``broker``: a private broker on free ports, one per test session and kind: a Mosquitto
  and a RabbitMQ node with the MQTT plugin (``--broker=mosquitto|rabbitmq|both``, default
  both, or ``DOVECOTE_TEST_BROKER``); every test that uses it runs once per broker, and
  ``@pytest.mark.brokers("mosquitto")`` limits one to the brokers named;
- ``cluster``: three RabbitMQ nodes clustered on loopback, once per test session (tests
  marked ``cluster``; ``python -m dovecote_testing.cluster`` starts the same by hand);
- ``root``: a fresh topic root per test, so tests sharing the broker never see each other;
- ``service_env``: the environment a service needs to join that broker under that root;
- ``start_service``: runs ``python -m services.<name>`` as a real process, stopped after;
- ``postgres``: a private PostgreSQL server, once per test session
  (``dovecote_testing.postgres``);
- ``databases``: where a test's stores go; each test that asks for it runs twice, its
  stores in SQLite files and in a fresh database of ``postgres`` (``databases.place(name)``
  for a store, ``databases.env`` for a service process);
- ``probe``: a bus client that records what is published and waits for it
  (Nameko's ``entrypoint_waiter``, on a real broker).

The plugin is registered for every pytest run in the project's environment (a ``pytest11``
entry point in pyproject.toml), so a service's own tests in ``services/<name>/`` use these
fixtures with no conftest. ``docs/adding-a-service.md`` shows how.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

__all__ = [
    "Databases",
    "MemoryBus",
    "Probe",
    "ServiceProcess",
    "StartService",
    "TestBroker",
    "wait_until",
]

from dovecote.project import PROJECT
from dovecote.store import Place
from dovecote.tools.broker import BrokerUnavailable, PrivateMosquitto, free_port
from dovecote_testing.cluster import NODES, PrivateCluster
from dovecote_testing.gateway import DEMO_PASSWORD, demo_password_hash
from dovecote_testing.memory import MemoryBus
from dovecote_testing.postgres import PostgresUnavailable, PrivatePostgres
from dovecote_testing.probe import Probe, wait_until
from dovecote_testing.rabbitmq import PrivateRabbitMQ


class ServiceProcess:
    """One service worker as a real OS process, its output in a log file."""

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, package: str = "services"
    ) -> None:
        self.name = name
        self.package = package  # run as ``python -m <package>.<name>``
        self.env = env
        self.instance = env.get("DOVECOTE_INSTANCE", "1")
        self.log_path = log_dir / f"{name}.{self.instance}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"{self.package}.{self.name}"],
            cwd=PROJECT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, as the supervisor would; SIGKILL if it does not stop in time."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """kill -9: no goodbye, no flush. The broker sends the Last Will."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --- pytest plugin -------------------------------------------------------------------------


BROKERS = ("mosquitto", "rabbitmq")
TestBroker = PrivateMosquitto | PrivateRabbitMQ


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker",
        choices=[*BROKERS, "both"],
        default=os.environ.get("DOVECOTE_TEST_BROKER", "both"),
        help="which private broker(s) the tests run against (default: both)",
    )
    parser.addoption(
        "--no-broker",
        action="store_true",
        help="the fast loop (make check): only the tests that need no real broker; a test "
        "that starts one anyway fails, so the selection stays honest",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "brokers(*kinds): run only against these brokers")
    config.addinivalue_line(
        "markers",
        "real_broker: needs a real broker (added to every test that uses the `broker` "
        "fixture; put it on a test that starts one itself); --no-broker leaves these out",
    )
    config.addinivalue_line(
        "markers",
        "cluster: uses the three-node RabbitMQ cluster (one per test session, ~35 s to start)",
    )
    if config.getoption("no_broker"):
        for kind in (PrivateMosquitto, PrivateRabbitMQ, PrivatePostgres):
            kind.start = _refuse_to_start  # type: ignore[assignment,method-assign]


def _refuse_to_start(self: object, *_: object, **__: object) -> object:
    raise BrokerUnavailable(
        f"--no-broker (make check), yet this test starts a private "
        f"{getattr(self, 'kind', 'PostgreSQL')}: mark it @pytest.mark.real_broker"
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if {"broker", "cluster"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_broker)
    if not config.getoption("no_broker"):
        return
    keep = [item for item in items if item.get_closest_marker("real_broker") is None]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


DATABASES = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "databases" in metafunc.fixturenames:
        # Every store test on both: SQLite in the fast loop, PostgreSQL (a real server) in
        # make test.
        metafunc.parametrize(
            "databases",
            [DATABASES[0], pytest.param(DATABASES[1], marks=pytest.mark.real_broker)],
            indirect=True,
        )
    if "broker" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("broker")
    kinds = list(BROKERS) if chosen == "both" else [chosen]
    only = metafunc.definition.get_closest_marker("brokers")
    if only is not None:
        kinds = [k for k in kinds if k in only.args]
    # Session scope: pytest groups the tests by broker, each broker starts once.
    metafunc.parametrize("broker", kinds, indirect=True, scope="session")


@pytest.fixture(scope="session")
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestBroker]:
    """A private broker for the test session, on free ports, with the project's dev config."""
    kind = getattr(request, "param", "mosquitto")
    b: TestBroker
    try:
        if kind == "rabbitmq":
            b = PrivateRabbitMQ(tmp_path_factory.mktemp("rabbitmq")).start()
        else:
            b = PrivateMosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    except BrokerUnavailable as exc:
        pytest.fail(f"cannot start a private {kind}: {exc}")
    yield b
    b.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    """Three RabbitMQ nodes clustered on loopback (``dovecote_testing.cluster``), once per
    test session. A test that kills a node starts it again (``cluster.restart``)."""
    try:
        c = PrivateCluster(tmp_path_factory.mktemp("cluster")).start()
    except BrokerUnavailable as exc:
        pytest.fail(f"cannot start a private RabbitMQ cluster: {exc}")
    yield c
    c.stop()


@pytest.fixture(autouse=True)
def _whole_cluster(request: pytest.FixtureRequest) -> None:
    """A test on the cluster starts with its three nodes up. A test that kills a node
    leaves it to the next one to start it again: the last test's restart (~10 s) would be
    for nobody."""
    if "cluster" not in request.fixturenames:
        return
    cluster: PrivateCluster = request.getfixturevalue("cluster")
    for name in NODES:
        if not cluster.node(name).running:
            cluster.restart(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL server for the test session (``dovecote_testing.postgres``), in a
    folder of /tmp (the server's user must reach it: pytest's own folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="dovecote-pg-"))
    try:
        server = PrivatePostgres(folder).start()
    except PostgresUnavailable as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(f"cannot start a private PostgreSQL: {exc}")
    yield server
    server.stop("immediate")
    shutil.rmtree(folder, ignore_errors=True)


class Databases:
    """Where one test's stores go: each in a SQLite file of the test's folder, or each in
    its schema of a fresh database on the session's private PostgreSQL."""

    def __init__(self, kind: str, folder: Path, url: str = "") -> None:
        self.kind = kind
        self.folder = folder
        self.url = url  # the PostgreSQL database; "" for SQLite

    def place(self, store: str) -> Place:
        if self.url:
            return Place.postgres(self.url, store)
        return Place.file(self.folder / f"{store}.sqlite3")

    @property
    def env(self) -> dict[str, str]:
        """For a service process: DATABASE_URL, or nothing (its files under its data dir)."""
        return {"DATABASE_URL": self.url} if self.url else {}


@pytest.fixture
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Databases:
    """Parametrized by the plugin: each test that asks for it runs on SQLite and on
    PostgreSQL (``databases.kind``)."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        return Databases(kind, tmp_path / "stores")
    server: PrivatePostgres = request.getfixturevalue("postgres")
    return Databases(kind, tmp_path / "stores", server.new_database())


@pytest.fixture
def root() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def environment(url: str, root: str, folder: Path, amqp_url: str = "") -> dict[str, str]:
    """What a service needs to join the broker at ``url`` under ``root``, its stores in
    ``folder``: this process's environment without any MQTT_ or DOVECOTE_ variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "DOVECOTE_"))}
    env.update(
        MQTT_URL=url,
        DOVECOTE_ROOT=root,
        PORT=str(free_port()),
        BUILD_TICK_SECONDS="0.2",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        # Every store (any service's, a new one's too) in the test's own folder, never the
        # project's .dovecote/.
        DOVECOTE_DATA_DIR=str(folder / "data"),
        # A gateway's sessions and its demo people (dovecote_testing.gateway signs in).
        DOVECOTE_SESSION_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        DEMO_PASSWORD=DEMO_PASSWORD,
        DEMO_PASSWORD_HASH=demo_password_hash(),  # made cheaply (dovecote_testing.gateway)
    )
    env["PUBLIC_URL"] = f"http://127.0.0.1:{env['PORT']}"
    if amqp_url:  # RabbitMQ: pools share a quorum queue (dovecote.poolqueue)
        env["DOVECOTE_AMQP_URL"] = amqp_url
    return env


@pytest.fixture
def service_env(broker: TestBroker, root: str, tmp_path: Path) -> dict[str, str]:
    amqp = broker.amqp_url if isinstance(broker, PrivateRabbitMQ) else ""
    return environment(broker.url, root, tmp_path, amqp)


StartService = Callable[..., ServiceProcess]


@pytest.fixture
def start_service(service_env: dict[str, str], tmp_path: Path) -> Iterator[StartService]:
    started: list[ServiceProcess] = []

    def start(name: str, package: str = "services", **env: str) -> ServiceProcess:
        proc = ServiceProcess(name, {**service_env, **env}, tmp_path, package).start()
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        code = proc.stop()
        # pytest shows a test's captured output only when it fails: then, what each
        # service said is right there in the report.
        tail = "\n".join(proc.log.splitlines()[-40:])
        print(f"--- {proc.name}.{proc.instance} (exit code {code}), {proc.log_path}:\n{tail}")


@pytest.fixture
async def probe(broker: TestBroker, root: str) -> AsyncIterator[Probe]:
    p = await Probe(broker.url, root).start()
    yield p
    await p.stop()


@pytest.fixture
async def memory_bus(root: str, tmp_path: Path) -> AsyncIterator[MemoryBus]:
    """A broker in the test's own event loop (``dovecote_testing.memory``): services as real
    Workers on it (``await memory_bus.start(MyService)``) and ``memory_bus.probe``, started.
    No broker process: the fast loop (``make check``) runs these tests."""
    bus = MemoryBus(root, tmp_path / "data")
    await bus.probe.start()
    yield bus
    await bus.close()
