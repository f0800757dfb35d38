"""`cdr-publisher config`: effective settings with secrets redacted, invalid ones named, and the
settings and metrics tables of docs/operations.md kept equal to the code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.metrics_core import Metric

from publisher import metrics
from publisher.cli import main
from publisher.commands.config import render_toml, settings_markdown, toml_string
from publisher.settings import REDACTED, Settings, load_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
TOKEN = "tok-3f9a1c7e5b"
CLIENT_SECRET = "cs-8d2e4b6a0f"
SASL_PASSWORD = "pw-1b3d5f7a9c"
OIDC_SECRET = "oidc-6e4c2a0b8d"
REGISTRY_PASSWORD = "reg-pass-7a5c3e1f"
SECRETS = (TOKEN, CLIENT_SECRET, SASL_PASSWORD, OIDC_SECRET, REGISTRY_PASSWORD)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CDR_PUBLISHER_"):
            monkeypatch.delenv(key)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_TOKEN", TOKEN)
    monkeypatch.setenv("CDR_PUBLISHER_WEBEX_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("CDR_PUBLISHER_KAFKA_SASL_PASSWORD", SASL_PASSWORD)
    monkeypatch.setenv("CDR_PUBLISHER_SCHEMA_REGISTRY_BASIC_AUTH", f"svc:{REGISTRY_PASSWORD}")
    monkeypatch.setenv(
        "CDR_PUBLISHER_KAFKA_EXTRA",
        json.dumps(
            {
                "sasl.oauthbearer.client.secret": OIDC_SECRET,
                "sasl.oauthbearer.token.endpoint.url": "https://idp.example.com/token",
                "socket.timeout.ms": "5000",
            }
        ),
    )


@pytest.mark.usefixtures("secret_env")
def test_toml_output_redacts_every_secret_and_reads_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TOML output hides every secret and is a --config file giving the same non-secret values."""
    assert main(["config"]) == 0
    out = capsys.readouterr().out

    for secret in SECRETS:
        assert secret not in out
    parsed = tomllib.loads(out)
    assert parsed["webex_token"] == REDACTED
    assert parsed["kafka_sasl_password"] == REDACTED
    assert parsed["kafka_extra"]["sasl.oauthbearer.client.secret"] == REDACTED
    # Not a credential: an operator needs to see it.
    assert parsed["kafka_extra"]["sasl.oauthbearer.token.endpoint.url"] == (
        "https://idp.example.com/token"
    )
    assert "# webex_refresh_token is not set" in out
    # Fed back without the environment, the file gives the same settings (secrets aside).
    for key in list(os.environ):
        if key.startswith("CDR_PUBLISHER_"):
            monkeypatch.delenv(key)
    config = tmp_path / "effective.toml"
    config.write_text(out)
    assert load_settings(config).redacted_dump() == {
        name: parsed.get(name) for name in Settings.model_fields
    }


@pytest.mark.usefixtures("secret_env")
def test_json_output_names_every_setting_and_hides_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """JSON output has one key per setting, null for unset ones, and no secret."""
    assert main(["config", "--format", "json"]) == 0
    out = capsys.readouterr().out

    parsed = json.loads(out)
    assert list(parsed) == list(Settings.model_fields)
    assert parsed["webex_client_secret"] == REDACTED
    assert parsed["schema_registry_basic_auth"] == REDACTED
    assert parsed["webex_refresh_token"] is None
    assert parsed["kafka_extra"]["socket.timeout.ms"] == "5000"
    for secret in SECRETS:
        assert secret not in out


def test_url_password_is_redacted_but_the_url_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password in a URL's user info is hidden; user, host and path stay readable."""
    monkeypatch.setenv(
        "CDR_PUBLISHER_SCHEMA_REGISTRY_URL", f"https://svc:{REGISTRY_PASSWORD}@reg.example:8443/v7"
    )

    settings = load_settings()

    assert settings.redacted_dump()["schema_registry_url"] == (
        f"https://svc:{REDACTED}@reg.example:8443/v7"
    )
    assert REGISTRY_PASSWORD in settings.secret_values()


@pytest.mark.usefixtures("secret_env")
def test_secret_values_lists_every_credential_for_the_scrubber() -> None:
    """Everything the log scrubber must know is listed, including KAFKA_EXTRA credentials and the
    registry password on its own; non-secret properties are not."""
    values = load_settings().secret_values()

    for secret in SECRETS:
        assert secret in values
    assert "https://idp.example.com/token" not in values


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("CDR_PUBLISHER_WEBEX_PAGE_SIZE", "99999", "CDR_PUBLISHER_WEBEX_PAGE_SIZE"),
        ("CDR_PUBLISHER_KAFKA_EXTRA", '{"sasl.password": pw-9c8b7a6d', "CDR_PUBLISHER_KAFKA_EXTRA"),
        ("CDR_PUBLISHER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL", "kafka_sasl_mechanism"),
        ("CDR_PUBLISHER_POLL_INTERVALS", "5", "CDR_PUBLISHER_POLL_INTERVALS"),
        ("CDR_PUBLISHER_SCHEMA_REGISTRY_URL", "ftp://u:pw-9c8b7a6d@h", "SCHEMA_REGISTRY_URL"),
    ],
)
def test_invalid_configuration_exits_1_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, named: str
) -> None:
    """An invalid, unparseable or unknown setting: exit 1, one line naming it, value not echoed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_PUBLISHER_")}
    env[name] = value
    proc = subprocess.run(
        [sys.executable, "-m", "publisher", "config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert named in lines[0]
    if len(value) > 4:
        assert value not in lines[0]
    assert "pw-9c8b7a6d" not in proc.stderr


def test_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--format yaml is refused by argparse with exit 2 and usage."""
    with pytest.raises(SystemExit) as info:
        main(["config", "--format", "yaml"])

    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_missing_config_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --config file that cannot be read exits 1 naming it."""
    assert main(["config", "--config", str(tmp_path / "absent.toml")]) == 1

    assert "absent.toml" in capsys.readouterr().err


@given(st.text())
def test_any_string_survives_toml_quoting(text: str) -> None:
    """toml_string gives a TOML string that reads back as the same text, whatever it holds."""
    assert tomllib.loads(f"v = {toml_string(text)}\n")["v"] == text


def test_render_toml_reads_back_every_value_kind() -> None:
    """Booleans, ints, floats (whole and not), lists and tables keep their type; None is a
    comment."""
    values = {
        "b": False,
        "i": -1,
        "f": 60.0,
        "g": 0.25,
        "inf": float("inf"),
        "l": ["a", 'b "c"'],
        "d": {"x.y": "1"},
        "e": {},
        "n": None,
    }

    parsed = tomllib.loads(render_toml(values))

    assert parsed == {k: v for k, v in values.items() if v is not None}
    assert isinstance(parsed["f"], float)


def _between(text: str, marker: str) -> str:
    found = re.search(
        rf"<!-- {marker}:begin -->\n(.*?)<!-- {marker}:end -->", text, flags=re.DOTALL
    )
    assert found, f"docs/operations.md lacks the {marker} markers"
    return found.group(1)


def test_settings_table_in_the_docs_is_generated_from_the_model() -> None:
    """The doc's settings table is exactly what `python -m publisher.commands.config` prints
    (regenerate it when a setting changes)."""
    table = _between(DOC.read_text(), "settings-table")

    assert table == settings_markdown()
    for name in Settings.model_fields:
        assert f"`CDR_PUBLISHER_{name.upper()}`" in table


def _exported_name(family: Metric) -> str:
    return f"{family.name}_total" if family.type == "counter" else family.name


def test_metrics_table_in_the_docs_matches_the_registry() -> None:
    """Every metric /metrics serves is in the doc's table with its type and labels, and the table
    names no metric that does not exist."""
    table = _between(DOC.read_text(), "metrics-table")
    rows = {
        cells[0].strip("` "): cells
        for line in table.splitlines()[2:]
        if (cells := [c.strip() for c in line.strip("|").split("|")])
    }
    families = {_exported_name(f): f for f in metrics.REGISTRY.collect()}

    assert set(rows) == set(families)
    collectors = {
        getattr(obj, "_name", None): obj for obj in vars(metrics).values() if hasattr(obj, "_name")
    }
    for name, family in families.items():
        assert rows[name][1] == family.type, name
        labels = collectors[family.name]._labelnames
        for label in labels:
            assert f"`{label}`" in rows[name][2], (name, label)
        if not labels:
            assert rows[name][2] == "none", name
