"""The local stack's pure parts: port settings, Java discovery, broker configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher import stack
from publisher.errors import StackError


def test_ports_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """CDR_STACK_* variables move the ports and the home folder."""
    monkeypatch.setenv("CDR_STACK_KAFKA_PORT", "29092")
    monkeypatch.setenv("CDR_STACK_REGISTRY_PORT", "28081")
    monkeypatch.setenv("CDR_STACK_HOME", str(tmp_path))

    config = stack.StackConfig.from_env()

    assert config.bootstrap_servers == "127.0.0.1:29092"
    assert config.registry_url == "http://127.0.0.1:28081/apis/ccompat/v7"
    assert config.state == tmp_path / "state"


@pytest.mark.parametrize("raw", ["abc", "0", "70000"])
def test_a_bad_port_names_the_setting(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    """A port that is not a number in range stops with the variable's name in the message."""
    monkeypatch.setenv("CDR_STACK_KAFKA_PORT", raw)

    with pytest.raises(StackError, match="CDR_STACK_KAFKA_PORT"):
        stack.StackConfig.from_env()


def _fake_jdk(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "java").write_text("#!/bin/sh\n")
    (home / "release").write_text(f'IMPLEMENTOR="x"\nJAVA_VERSION="{version}"\n')
    return home


def test_java_major_reads_the_release_file(tmp_path: Path) -> None:
    """The JDK's release file gives its major version, for old and new numbering alike."""
    assert stack.java_major(_fake_jdk(tmp_path, "a", "25.0.1")) == 25
    assert stack.java_major(_fake_jdk(tmp_path, "b", "17.0.15")) == 17
    assert stack.java_major(tmp_path / "missing") is None


def test_find_java_prefers_a_new_enough_java_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """JAVA_HOME wins when it is new enough; nothing hard-codes a JDK path."""
    home = _fake_jdk(tmp_path, "jdk99", "99.0.1")
    monkeypatch.setenv("JAVA_HOME", str(home))

    assert stack.find_java(21) == home / "bin" / "java"


def test_find_java_fails_with_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """When no JDK is new enough, the error says which version is needed."""
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(StackError, match="no Java 999\\+ found"):
        stack.find_java(999)


def test_broker_config_makes_transactions_work_on_one_node(tmp_path: Path) -> None:
    """The generated server.properties sets the one-node settings transactions need."""
    config = stack.StackConfig(home=tmp_path, kafka_port=1111, controller_port=2222)

    props = dict(
        line.split("=", 1)
        for line in stack._server_properties(config, tmp_path).splitlines()
        if line
    )

    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:1111,CONTROLLER://127.0.0.1:2222"
    assert props["process.roles"] == "broker,controller"


def test_status_of_a_stack_never_started_is_down(tmp_path: Path) -> None:
    """A stack with no pid file reports both services down and down() stops nothing."""
    config = stack.StackConfig(home=tmp_path, kafka_port=1, registry_port=2)

    assert stack.status(config) == {"kafka": False, "registry": False}
    assert stack.down(config) == []
