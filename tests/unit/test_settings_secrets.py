"""Secrets in the settings never show (repr, str, model dump, config output), every credential
reaches the log scrubber, and start-up refuses a dedup horizon shorter than the stream serves."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from publisher import logs
from publisher.cli import main
from publisher.errors import ConfigError, UsageError
from publisher.settings import Settings, is_secret_property, load_settings

# Property names from librdkafka's CONFIGURATION.md whose values are credentials.
LIBRDKAFKA_SECRET_PROPERTIES = [
    "sasl.password",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "sasl.oauthbearer.config",
    "sasl.jaas.config",
]
# ... and some whose values are not (paths, ids, public certificates, endpoints).
LIBRDKAFKA_PLAIN_PROPERTIES = [
    "sasl.username",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.method",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.certificate.pem",
    "ssl.ca.pem",
    "ssl.ca.location",
    "sasl.oauthbearer.assertion.claim.sub",
    "client.id",
]


@pytest.mark.parametrize("name", LIBRDKAFKA_SECRET_PROPERTIES)
def test_every_librdkafka_credential_property_is_secret(name: str) -> None:
    """A property whose name says password, passphrase, secret or private key is a secret."""
    assert is_secret_property(name)
    assert is_secret_property(name.upper())


@pytest.mark.parametrize("name", LIBRDKAFKA_PLAIN_PROPERTIES)
def test_plain_librdkafka_properties_stay_visible(name: str) -> None:
    """Ids, paths and endpoints are not redacted (config output stays useful)."""
    assert not is_secret_property(name)


SECRETS = {
    "KAFKA_EXTRA": orjson.dumps(
        {
            "sasl.oauthbearer.assertion.private.key.passphrase": "passphrase-val-1",
            "ssl.keystore.password": "keystore-val-2",
            "sasl.oauthbearer.client.secret": "oidc-secret-val-3",
            "client.id": "visible-client-id",
        }
    ).decode(),
    "SCHEMA_REGISTRY_URL": "https://reguser:urlpassword-val-4@registry.example.com",
    "SCHEMA_REGISTRY_BASIC_AUTH": "user:basicpw-val-5",
    "KAFKA_SASL_PASSWORD": "sasl-val-6",
    "WEBEX_TOKEN": "webex-token-val-7",
    "ADMIN_TOKEN": "admin-token-val-8-abcdefgh",
}
SECRET_VALUES = [
    "passphrase-val-1",
    "keystore-val-2",
    "oidc-secret-val-3",
    "urlpassword-val-4",
    "basicpw-val-5",
    "sasl-val-6",
    "webex-token-val-7",
    "admin-token-val-8-abcdefgh",
]


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in SECRETS.items():
        monkeypatch.setenv(f"CDR_PUBLISHER_{name}", value)
    return load_settings()


def test_repr_str_and_model_dump_show_no_secret(secret_env: Settings) -> None:
    """repr, str, model_dump and model_dump_json of the settings hold none of the secret values,
    while the settings still hold them and the non-secret parts stay visible."""
    shown = [
        repr(secret_env),
        str(secret_env),
        str(secret_env.model_dump()),
        secret_env.model_dump_json(),
        f"{secret_env!r} {secret_env}",
    ]
    for text in shown:
        for value in SECRET_VALUES:
            assert value not in text
    assert "visible-client-id" in repr(secret_env)
    assert "registry.example.com" in repr(secret_env)
    assert secret_env.kafka_extra["ssl.keystore.password"] == "keystore-val-2"


def test_secret_values_lists_every_credential_including_the_admin_token(
    secret_env: Settings,
) -> None:
    """What the scrubber is fed holds every secret value, the admin token included."""
    assert set(SECRET_VALUES) <= set(secret_env.secret_values())


def test_config_command_redacts_the_admin_token_and_extra_passphrases(
    secret_env: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`cdr-publisher config` (both formats) prints no secret value."""
    assert main(["config"]) == 0
    assert main(["config", "--format", "json"]) == 0
    out = capsys.readouterr().out
    for value in SECRET_VALUES:
        assert value not in out
    assert 'admin_token = "**********"' in out


@pytest.mark.parametrize("command", ["fetch", "replay"])
def test_fetch_and_replay_register_every_settings_secret(
    command: str, secret_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetch and replay commands feed the scrubber settings.secret_values(), not a list of
    their own (which missed KAFKA_EXTRA secrets, URL passwords and the admin token)."""
    registered: list[str] = []
    monkeypatch.setattr(logs, "register_secret", registered.append)
    monkeypatch.setattr(logs, "configure", lambda *_a: None)

    def stop_here(*_args: object, **_kwargs: object) -> None:
        raise UsageError("stopped by the test after start-up")

    # Where each command first reaches out (the API, a daemon): stop there.
    monkeypatch.setattr("publisher.webex.client.CdrClient.from_settings", stop_here)
    monkeypatch.setattr("publisher.commands.replay.find_daemon", stop_here)
    end = datetime.now(UTC) - timedelta(hours=2)
    span = ["--start", (end - timedelta(hours=1)).isoformat(), "--end", end.isoformat()]
    args = ["fetch", "--endpoint", "feed", *span] if command == "fetch" else ["replay", *span]

    assert main(args) == 2
    assert set(secret_env.secret_values()) <= set(registered)


def test_the_admin_token_file_is_read_and_checked(tmp_path: Path) -> None:
    """ADMIN_TOKEN_FILE gives the token; a missing file or a short token names the setting."""
    from publisher.settings import read_admin_token

    path = tmp_path / "admin"
    path.write_text("file-admin-token-0123456789\n", encoding="utf-8")
    assert read_admin_token(Settings(admin_token_file=path)) == "file-admin-token-0123456789"
    path.write_text("short", encoding="utf-8")
    with pytest.raises(ConfigError, match="CDR_PUBLISHER_ADMIN_TOKEN_FILE"):
        read_admin_token(Settings(admin_token_file=path))
    with pytest.raises(ConfigError, match="CDR_PUBLISHER_ADMIN_TOKEN_FILE"):
        read_admin_token(Settings(admin_token_file=tmp_path / "missing"))
    assert read_admin_token(Settings()) is None


def test_a_short_admin_token_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A guessable admin token stops start-up naming CDR_PUBLISHER_ADMIN_TOKEN, not echoing it."""
    monkeypatch.setenv("CDR_PUBLISHER_ADMIN_TOKEN", "hunter2")
    with pytest.raises(ConfigError, match="CDR_PUBLISHER_ADMIN_TOKEN") as info:
        load_settings()
    assert "hunter2" not in str(info.value)


# --- the dedup horizon --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("horizon", "overlap"),
    [("6", None), ("12", None), ("12.05", "300"), ("12.5", "3600")],
)
def test_a_horizon_shorter_than_the_stream_plus_the_overlap_stops_start_up(
    horizon: str, overlap: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEDUP_HORIZON_HOURS below 12 h + OVERLAP_SECONDS is refused, naming the setting."""
    monkeypatch.setenv("CDR_PUBLISHER_DEDUP_HORIZON_HOURS", horizon)
    if overlap is not None:
        monkeypatch.setenv("CDR_PUBLISHER_OVERLAP_SECONDS", overlap)
    with pytest.raises(ConfigError, match="CDR_PUBLISHER_DEDUP_HORIZON_HOURS"):
        load_settings()


@pytest.mark.parametrize(("horizon", "overlap"), [("13", "300"), ("12", "0"), ("12.1", "300")])
def test_a_horizon_covering_the_stream_and_the_overlap_is_accepted(
    horizon: str, overlap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default (13 h, 300 s) and anything at or above 12 h + overlap starts."""
    monkeypatch.setenv("CDR_PUBLISHER_DEDUP_HORIZON_HOURS", horizon)
    monkeypatch.setenv("CDR_PUBLISHER_OVERLAP_SECONDS", overlap)
    assert load_settings().dedup_horizon_hours == float(horizon)


def test_no_secret_in_a_log_line_of_a_repr(
    secret_env: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Logging the settings object (a mistake that happens) leaks nothing either."""
    with caplog.at_level(logging.INFO):
        logging.getLogger("publisher.test").info("settings: %r", secret_env)
    for value in SECRET_VALUES:
        assert value not in caplog.text
