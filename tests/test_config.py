"""Configuration from the environment, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from dovecote.capabilities import Capabilities, declared
from dovecote.config import ConfigError, Settings, parse_mqtt_url


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.mqtt_url == "mqtt://localhost:1883"
    assert (s.root, s.instance, s.port, s.log_level) == ("dovecote", "1", 8080, "INFO")
    assert s.public_url == "http://localhost:8080"


def test_mqtt_url_with_credentials_is_parsed_and_redacted() -> None:
    b = parse_mqtt_url("mqtt://svc%40x:s3cret@broker.example:1884")
    assert (b.host, b.port, b.username, b.password) == ("broker.example", 1884, "svc@x", "s3cret")
    assert "s3cret" not in b.redacted()
    assert parse_mqtt_url("mqtts://h").port == 8883
    assert parse_mqtt_url("wss://h/mqtt").websockets


def test_mqtt_url_may_name_every_node_of_a_cluster() -> None:
    b = parse_mqtt_url("mqtt://svc:pw@a.example:1883,b.example:1884,[::1]:1885,c.example")
    assert b.nodes == [("a.example", 1883), ("b.example", 1884), ("::1", 1885), ("c.example", 1883)]
    assert (b.host, b.port, b.username, b.password) == ("a.example", 1883, "svc", "pw")
    assert b.redacted() == "mqtt://svc:***@a.example:1883,b.example:1884,[::1]:1885,c.example:1883"
    assert parse_mqtt_url("mqtt://h:1").nodes == [("h", 1)]
    assert parse_mqtt_url("wss://a,b/ws").nodes == [("a", 443), ("b", 443)]
    with pytest.raises(ConfigError, match="no host"):
        parse_mqtt_url("mqtt://a:1883,,b:1884")
    with pytest.raises(ConfigError, match="bad port"):
        parse_mqtt_url("mqtt://a:1883,b:x")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MQTT_URL": "http://x"}, "scheme"),
        ({"MQTT_URL": "mqtt://"}, "no host"),
        ({"MQTT_URL": "mqtt://h:99999"}, "bad port"),
        ({"DOVECOTE_ROOT": "Dove/Cote"}, "DOVECOTE_ROOT"),
        ({"DOVECOTE_INSTANCE": "a.b"}, "DOVECOTE_INSTANCE"),
        ({"PORT": "eighty"}, "PORT must be an integer"),
        ({"PORT": "0"}, "between"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
    ],
)
def test_bad_settings_are_reported_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_broker_capabilities_can_be_stated_instead_of_probed() -> None:
    """A login pinned to one client id cannot open the probe's second connection."""
    assert declared("") is None and declared(" , ") is None  # empty: probe at start
    assert declared("shared-subscriptions,retained-to-wildcards") == Capabilities(True, True)
    assert declared("retained-to-wildcards") == Capabilities(False, True)
    assert declared("none") == Capabilities(False, False)
    for bad in ("yes", "shared", "none,shared-subscriptions"):
        with pytest.raises(ConfigError, match="DOVECOTE_BROKER_CAPABILITIES"):
            declared(bad)


def test_a_ca_file_is_checked_at_start_and_carried_to_the_broker_address(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    s = Settings.from_env({"MQTT_URL": "mqtts://h:8883", "MQTT_CA_FILE": str(ca)})
    assert s.broker.tls and s.broker.ca_file == str(ca)
    assert Settings.from_env({"MQTT_URL": "mqtts://h"}).broker.ca_file is None
    with pytest.raises(ConfigError, match="MQTT_CA_FILE"):
        Settings.from_env({"MQTT_URL": "mqtts://h", "MQTT_CA_FILE": str(tmp_path / "nope")})
