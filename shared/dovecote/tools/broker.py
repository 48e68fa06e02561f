"""Finding a broker, or starting a private Mosquitto: for ``dovecote run`` and for tests.

Order: ``MQTT_URL`` if set; else ``mqtt://localhost:1883`` if an MQTT broker
answers there; else a private Mosquitto started as a child process with the project's dev
config (``deploy/mosquitto/dev.conf``), its data in a project-local folder. A missing
``mosquitto`` is installed with the system's package manager when that is possible without
a password; otherwise we stop and print the one command to run.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from dovecote.errors import DovecoteError
from dovecote.project import PROJECT

DEV_CONF = PROJECT / "deploy" / "mosquitto" / "dev.conf"


class BrokerUnavailable(DovecoteError, RuntimeError):
    """No broker, and none can be started here; ``str()`` says what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free to listen on, outside the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` comes from that range, and so does the local
    port of every outgoing connection: between picking it and a server binding it, another
    process's connection can take it (seen with tests in parallel). Below the range, only
    listeners compete, and a random pick makes two of them unlikely to meet.
    """
    low, high = _ephemeral_range()
    pick = random.SystemRandom()
    for _ in range(200):
        port = pick.randrange(10_000, 65_535)
        if low <= port <= high:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # everything tried was taken: let the kernel choose
        s.bind((host, 0))
        chosen: int = s.getsockname()[1]
        return chosen


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


# MQTT 3.1.1 CONNECT: clean session, keepalive 5 s, client id "dovecote-probe".
_PROBE_CONNECT = bytes([0x10, 0x1C, 0x00, 0x04]) + b"MQTT" + bytes([0x04, 0x02, 0x00, 0x05])
_PROBE_CONNECT += bytes([0x00, 0x10]) + b"dovecote-probe-1"


def mqtt_answers(host: str, port: int, timeout: float = 1.0, ca_file: str | None = None) -> bool:
    """True if something at host:port speaks MQTT (any CONNACK, even 'not authorised');
    over TLS, verified against ``ca_file``, when one is given."""
    try:
        with contextlib.ExitStack() as stack:
            s = stack.enter_context(socket.create_connection((host, port), timeout))
            if ca_file is not None:
                tls = ssl.create_default_context(cafile=ca_file)
                s = stack.enter_context(tls.wrap_socket(s, server_hostname=host))
            s.settimeout(timeout)
            s.sendall(_PROBE_CONNECT)
            reply = s.recv(4)
            with contextlib.suppress(OSError):
                s.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError:
        return False
    return len(reply) >= 2 and reply[0] == 0x20


def mosquitto_binary() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in (
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/opt/homebrew/sbin/mosquitto",
    ):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def install_command() -> str:
    if shutil.which("apt-get"):
        return "sudo apt-get install -y mosquitto"
    if shutil.which("dnf"):
        return "sudo dnf install -y mosquitto"
    if shutil.which("brew"):
        return "brew install mosquitto"
    return "install Mosquitto 2 from https://mosquitto.org/download/"


def try_install(say: Callable[[str], None] = print) -> bool:
    """Install Mosquitto if this can be done without asking for a password."""
    if shutil.which("apt-get"):
        prefix: list[str] = []
        if os.geteuid() != 0:
            if (
                not shutil.which("sudo")
                or subprocess.run(
                    ["sudo", "-n", "true"], capture_output=True, check=False
                ).returncode
            ):
                return False
            prefix = ["sudo", "-n"]
        say("installing mosquitto with apt-get ...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = [*prefix, "apt-get", "install", "-y", "-q", "mosquitto"]
        if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode:
            subprocess.run(
                [*prefix, "apt-get", "update", "-q"], env=env, capture_output=True, check=False
            )
            if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode:
                return False
        # Debian starts the packaged broker on 1883 as a system service; that is fine, but
        # we use our own below so that the dev config (persistence, limits) applies.
        return mosquitto_binary() is not None
    if shutil.which("brew"):
        say("installing mosquitto with brew ...")
        return subprocess.run(["brew", "install", "mosquitto"], check=False).returncode == 0
    return False


def _term_with_parent(parent: int) -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux's PR_SET_PDEATHSIG).

    Mosquitto cannot watch a pipe the way a worker does (``dovecote.lifeline``). The signal
    comes when the *thread* that started the child ends: start it from the main thread.
    """
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the line above: no signal will come
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class PrivateMosquitto:
    """A Mosquitto of our own: config rendered from dev.conf, data under ``directory``."""

    kind: ClassVar[str] = "mosquitto"
    directory: Path
    port: int = 0
    ws_port: int = 0
    host: str = "127.0.0.1"
    extra_config: str = ""
    config_text: str | None = None  # a whole config (e.g. production.conf, adapted) instead
    ca_file: str | None = None  # its port speaks TLS, with a certificate this CA signed
    # `dovecote run`'s broker: stopped by the kernel if the supervisor dies (Linux only).
    die_with_parent: bool = False
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    def write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        self.port = self.port or free_port(self.host)
        self.ws_port = self.ws_port or free_port(self.host)
        conf = DEV_CONF.read_text() if self.config_text is None else self.config_text
        for key, value in {
            "@DIR@": str(self.directory),
            "@DATA_DIR@": str(data),
            "@PORT@": str(self.port),
            "@WS_PORT@": str(self.ws_port),
            "@HOST@": self.host,
        }.items():
            conf = conf.replace(key, value)
        if os.geteuid() == 0:
            # Started as root, Mosquitto would switch to user "mosquitto", who cannot enter
            # private folders such as pytest's: a loopback-only dev broker may stay root.
            conf += "\n# running as root (dev broker, loopback only)\nuser root\n"
        path = self.directory / "mosquitto.conf"
        path.write_text(conf + ("\n" + self.extra_config if self.extra_config else ""))
        return path

    def start(self, timeout: float = 10.0) -> PrivateMosquitto:
        binary = mosquitto_binary()
        if binary is None:
            raise BrokerUnavailable(f"mosquitto is not installed: {install_command()}")
        conf = self.write_config()
        linux = sys.platform.startswith("linux")
        with (self.directory / "stderr.log").open("ab") as err:
            self.process = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # Ctrl-C goes to the supervisor, which stops us last
                preexec_fn=(
                    functools.partial(_term_with_parent, os.getpid())
                    if self.die_with_parent and linux
                    else None
                ),
            )
        try:
            return self._wait_answering(timeout)
        except BaseException:  # Ctrl-C while starting, too: no broker left behind
            self.stop()
            raise

    def _wait_answering(self, timeout: float) -> PrivateMosquitto:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err_text = (self.directory / "stderr.log").read_text(errors="replace")
                log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
                raise BrokerUnavailable(f"mosquitto exited at start: {err_text}{log[-2000:]}")
            if mqtt_answers(self.host, self.port, 0.5, self.ca_file):
                return self
            time.sleep(0.05)
        raise BrokerUnavailable(f"mosquitto did not answer on port {self.port} in {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful: SIGTERM makes Mosquitto save its database first."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """As a crash would: no chance to save."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Choice:
    url: str
    description: str
    private: PrivateMosquitto | None = None


def choose(
    env: dict[str, str],
    data_dir: Path,
    say: Callable[[str], None] = print,
    local_port: int = 1883,
    private_port: int | None = None,
) -> Choice:
    """Pick (or start) the broker the federation will use, and say which.

    ``private_port`` asks for a private Mosquitto on that port (0: any free one) whatever
    else is configured or answering: ``dovecote run --private-broker PORT``.
    """
    if private_port is not None:
        return _start_private(data_dir, say, private_port, asked=True)
    url = env.get("MQTT_URL", "").strip()
    if url:
        return Choice(url, f"the broker at MQTT_URL ({_redact(url)})")
    if mqtt_answers("localhost", local_port):
        return Choice(
            f"mqtt://localhost:{local_port}",
            f"the broker already answering on localhost:{local_port}",
        )
    return _start_private(data_dir, say, local_port if _port_free(local_port) else 0)


def _start_private(
    data_dir: Path, say: Callable[[str], None], port: int, asked: bool = False
) -> Choice:
    if mosquitto_binary() is None and not try_install(say):
        why = (
            "a private broker was asked for"
            if asked
            else "no MQTT broker is configured (MQTT_URL) or answering on localhost:1883"
        )
        raise BrokerUnavailable(
            f"{why}, and Mosquitto is not installed. Run:\n\n    {install_command()}"
            "\n\nthen try again."
        )
    if asked and port and not _port_free(port):
        raise BrokerUnavailable(
            f"port {port} is taken: choose another (--private-broker PORT), or 0 for any free one"
        )
    broker = PrivateMosquitto(data_dir, port=port, die_with_parent=True).start()
    return Choice(
        broker.url,
        f"a private Mosquitto on port {broker.port} (data in {data_dir}, log {broker.log_file})",
        broker,
    )


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _redact(url: str) -> str:
    from dovecote.config import parse_mqtt_url

    return parse_mqtt_url(url).redacted()
