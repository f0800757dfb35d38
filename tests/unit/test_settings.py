"""Settings: env and TOML sources, unknown and invalid settings named, secrets redacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.errors import ConfigError
from publisher.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("CDR_PUBLISHER_"):
            monkeypatch.delenv(key)


def test_environment_overrides_the_toml_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A TOML value is used unless the matching CDR_PUBLISHER_ variable is set."""
    config = tmp_path / "c.toml"
    config.write_text('events_topic = "from.toml"\ndlq_topic = "dlq.toml"\n')
    monkeypatch.setenv("CDR_PUBLISHER_EVENTS_TOPIC", "from.env")

    settings = load_settings(config)

    assert settings.events_topic == "from.env"
    assert settings.dlq_topic == "dlq.toml"


def test_unknown_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt variable stops start-up instead of being silently ignored."""
    monkeypatch.setenv("CDR_PUBLISHER_EVENT_TOPIC", "x")

    with pytest.raises(ConfigError, match="CDR_PUBLISHER_EVENT_TOPIC"):
        load_settings()


def test_unknown_toml_key_is_named(tmp_path: Path) -> None:
    """A misspelt TOML key stops start-up naming the key."""
    config = tmp_path / "c.toml"
    config.write_text("pol_interval_seconds = 5\n")

    with pytest.raises(ConfigError, match="pol_interval_seconds"):
        load_settings(config)


def test_invalid_value_is_named_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid value names the variable; the value itself (maybe a secret) is not echoed."""
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_PAGE_SIZE", "12345678")

    with pytest.raises(ConfigError, match="CDR_PUBLISHER_WEBEX_PAGE_SIZE") as info:
        load_settings()

    assert "12345678" not in str(info.value)


def test_plain_http_is_refused_except_for_loopback() -> None:
    """The simulator on loopback may use http; any other host must use https."""
    assert load_settings(webex_base_url="http://127.0.0.1:8080").webex_base_url.startswith("http:")
    with pytest.raises(ConfigError, match="CDR_PUBLISHER_WEBEX_BASE_URL"):
        load_settings(webex_base_url="http://analytics-calling.webexapis.com")


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens and passwords are SecretStr: neither repr nor str shows them."""
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_TOKEN", "tok-very-secret")
    monkeypatch.setenv("CDR_PUBLISHER_KAFKA_SASL_PASSWORD", "sasl-very-secret")

    settings = load_settings()

    assert settings.webex_token is not None
    assert settings.webex_token.get_secret_value() == "tok-very-secret"
    assert "very-secret" not in repr(settings)
    assert "very-secret" not in str(settings.model_dump())


def test_sasl_protocol_needs_a_mechanism() -> None:
    """SASL_SSL without a mechanism is refused at start-up."""
    with pytest.raises(ConfigError, match="kafka_sasl_mechanism"):
        load_settings(kafka_security_protocol="SASL_SSL")


def test_schema_compatibility_defaults_to_backward_transitive_and_ignores_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The registry guard is on by default; `unmanaged` in any case hands it to the operator."""
    assert load_settings().schema_compatibility == "BACKWARD_TRANSITIVE"
    monkeypatch.setenv("CDR_PUBLISHER_SCHEMA_COMPATIBILITY", "unmanaged")

    assert load_settings().schema_compatibility == "UNMANAGED"


def test_unknown_schema_compatibility_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """A level the registry does not know stops start-up naming the variable."""
    monkeypatch.setenv("CDR_PUBLISHER_SCHEMA_COMPATIBILITY", "SIDEWAYS")

    with pytest.raises(ConfigError, match="CDR_PUBLISHER_SCHEMA_COMPATIBILITY"):
        load_settings()
