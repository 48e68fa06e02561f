"""Configuration from the environment, and its errors."""

from __future__ import annotations

import pytest

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
