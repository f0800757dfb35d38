"""The reading commands find the local stack only when nothing names Kafka or the registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from publisher import cli_support


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CDR_PUBLISHER_"):
            monkeypatch.delenv(key)


def test_nothing_configured_means_both_may_come_from_the_stack() -> None:
    """With no variable and no file, neither location counts as configured."""
    assert cli_support.configured(None) == set()


def test_an_environment_variable_or_a_toml_key_counts_as_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The bootstrap servers from the environment and the registry from --config are the
    user's choice: the stack is not used for either."""
    monkeypatch.setenv("CDR_PUBLISHER_KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    config = tmp_path / "c.toml"
    config.write_text('schema_registry_url = "https://registry.example.com"\n')

    assert cli_support.configured(config) == {"kafka_bootstrap_servers", "schema_registry_url"}


def test_a_stopped_stack_leaves_the_defaults_and_says_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No stack running (an empty stack home): the settings keep their defaults, no notice."""
    monkeypatch.setenv("CDR_STACK_HOME", str(tmp_path))

    settings = cli_support.load_reader_settings(None)

    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert capsys.readouterr().err == ""
