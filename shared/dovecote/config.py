"""Configuration, read once from the environment at start-up (12-factor).

Handlers never read the environment: a service reads a ``Settings`` in ``__main__`` and
passes what its handlers need to their constructor.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dovecote.errors import ConfigError
from dovecote.project import PROJECT

__all__ = ["BrokerAddress", "ConfigError", "Settings", "data_dir", "parse_mqtt_url"]

DEFAULT_MQTT_URL = "mqtt://localhost:1883"
_ROOT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is, parsed from ``MQTT_URL`` (mqtt://user:pass@host:port)."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    path: str = "/mqtt"
    ca_file: str | None = None  # PEM CA(s) for mqtts:// and wss://; None: the system's
    # More nodes of the same broker (a cluster), tried in order after host:port when it
    # cannot be reached or is lost: mqtt://a:1883,b:1884,c:1885
    others: tuple[tuple[str, int], ...] = ()

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """Every (host, port) of the broker, in the order to try them."""
        return [(self.host, self.port), *self.others]

    @property
    def tls(self) -> bool:
        return self.scheme in ("mqtts", "wss")

    @property
    def websockets(self) -> bool:
        return self.scheme in ("ws", "wss")

    def redacted(self) -> str:
        """The URL as safe to print: the password is never logged."""
        auth = f"{self.username}:***@" if self.username else ""
        hosts = ",".join(_hostport(h, p) for h, p in self.nodes)
        return f"{self.scheme}://{auth}{hosts}"

    def node_url(self, host: str, port: int) -> str:
        """One node, as safe to print."""
        auth = f"{self.username}:***@" if self.username else ""
        return f"{self.scheme}://{auth}{_hostport(host, port)}"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ws": 80, "wss": 443}


def parse_mqtt_url(url: str, ca_file: str | None = None) -> BrokerAddress:
    """``mqtt://user:pass@host:port/path``; several nodes of one broker (a cluster) are
    listed comma-separated, ``mqtt://user:pass@a:1883,b:1884,c:1885``: same scheme, login
    and path for all, each node's port its own (default: the scheme's)."""
    whole = urlsplit(url)
    if whole.scheme not in _DEFAULT_PORTS:
        raise ConfigError(f"MQTT_URL: scheme must be one of {sorted(_DEFAULT_PORTS)}, got {url!r}")
    auth, at, hosts = whole.netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for one in hosts.split(","):
        parts = urlsplit(f"{whole.scheme}://{auth}{at}{one.strip()}{whole.path}")
        if not parts.hostname:
            raise ConfigError(f"MQTT_URL: no host in {url!r}")
        try:
            nodes.append((parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme]))
        except ValueError as exc:
            raise ConfigError(f"MQTT_URL: bad port in {url!r}") from exc
    parts = urlsplit(f"{whole.scheme}://{auth}{at}{hosts.split(',')[0].strip()}{whole.path}")
    (host, port), *others = nodes
    scheme = "mqtt" if parts.scheme == "tcp" else parts.scheme
    return BrokerAddress(
        scheme=scheme,
        host=host,
        port=port,
        others=tuple(others),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        path=parts.path or "/mqtt",
        ca_file=ca_file or None,
    )


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything every service shares. Service-specific settings live with the service."""

    mqtt_url: str
    broker: BrokerAddress
    root: str  # topic root, ``dovecote`` unless DOVECOTE_ROOT says otherwise
    instance: str  # worker id within its service; part of the stable MQTT client id
    log_level: str
    log_format: str  # "text" (one readable line) or "json" (one JSON object per line)
    max_payload_bytes: int  # larger payloads are dead-lettered unread
    handler_attempts: int  # a failing handler is tried this often, then dead-lettered
    keepalive: int
    host: str  # gateway bind address
    port: int  # gateway port
    public_url: str  # how browsers and services reach the gateway
    env: Mapping[str, str]  # the raw environment, for a service's own settings

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        url = env.get("MQTT_URL", "").strip() or DEFAULT_MQTT_URL
        root = env.get("DOVECOTE_ROOT", "dovecote").strip()
        if not _ROOT_RE.match(root):
            raise ConfigError(f"DOVECOTE_ROOT must match {_ROOT_RE.pattern}, got {root!r}")
        instance = env.get("DOVECOTE_INSTANCE", "").strip() or "1"
        if not _ROOT_RE.match(instance):
            raise ConfigError(f"DOVECOTE_INSTANCE must match {_ROOT_RE.pattern}, got {instance!r}")
        level = env.get("LOG_LEVEL", "INFO").strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        log_format = env.get("LOG_FORMAT", "").strip().lower() or "text"
        if log_format not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be text or json, got {log_format!r}")
        port = _int(env, "PORT", 8080, 1, 65535)
        host = env.get("HOST", "").strip() or "127.0.0.1"
        public = env.get("PUBLIC_URL", "").strip().rstrip("/")
        if not public:
            shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
            public = f"http://{shown}:{port}"
        ca_file = env.get("MQTT_CA_FILE", "").strip() or None
        if ca_file is not None and not Path(ca_file).is_file():
            raise ConfigError(f"MQTT_CA_FILE: no such file {ca_file!r}")
        return cls(
            mqtt_url=url,
            broker=parse_mqtt_url(url, ca_file),
            root=root,
            instance=instance,
            log_level=level,
            log_format=log_format,
            max_payload_bytes=_int(env, "DOVECOTE_MAX_PAYLOAD", 256 * 1024, 1024, 64 * 1024**2),
            handler_attempts=_int(env, "DOVECOTE_HANDLER_ATTEMPTS", 3, 1, 100),
            keepalive=_int(env, "MQTT_KEEPALIVE", 30, 5, 3600),
            host=host,
            port=port,
            public_url=public,
            env=env,
        )

    @property
    def data_dir(self) -> Path:
        """Where every store of this run defaults to (``DOVECOTE_DATA_DIR``)."""
        return data_dir(self.env)

    def get_int(self, name: str, default: int, lo: int = 0, hi: int = 2**31) -> int:
        return _int(self.env, name, default, lo, hi)

    def get_float(self, name: str, default: float, lo: float = 0.0, hi: float = 1e9) -> float:
        return _float(self.env, name, default, lo, hi)

    def get_str(self, name: str, default: str) -> str:
        return self.env.get(name, "").strip() or default


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``DOVECOTE_DATA_DIR``, else ``.dovecote/`` in the project folder: the one folder every
    store (ledgers, images, outboxes, a private broker) defaults to, so a test that sets it
    isolates every service, a new one included."""
    chosen = (os.environ if env is None else env).get("DOVECOTE_DATA_DIR", "").strip()
    return Path(chosen) if chosen else PROJECT / ".dovecote"


def hostname() -> str:
    return socket.gethostname()
