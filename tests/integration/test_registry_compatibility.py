"""The registry guards the event schema: the publisher sets the subject's compatibility and asks
the registry before registering, and an incompatible version is refused by the registry itself."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from publisher.errors import SchemaError
from publisher.event_schema import event_schema, schema_text
from publisher.registry import ensure_event_schema, subject_for
from tests.integration.daemon_helpers import DaemonEnv

RELEASED = Path(__file__).resolve().parents[2] / "schemas" / "released"


def _released_in_order() -> list[Path]:
    def version(path: Path) -> int:
        found = re.search(r"\.v(\d+)\.schema\.json$", path.name)
        assert found, path
        return int(found.group(1))

    return sorted(RELEASED.glob("cdr-event.v*.schema.json"), key=version)


def _required_property_removed(schema: dict[str, Any]) -> None:
    del schema["properties"]["cdr"]["properties"]["report_id"]
    schema["properties"]["cdr"]["required"].remove("report_id")


def _type_changed(schema: dict[str, Any]) -> None:
    schema["properties"]["cdr"]["properties"]["duration"]["type"] = ["string", "null"]


def _required_added(schema: dict[str, Any]) -> None:
    schema["properties"]["cdr"]["required"].append("user")


INCOMPATIBLE: dict[str, Callable[[dict[str, Any]], None]] = {
    "required property removed": _required_property_removed,
    "type changed": _type_changed,
    "required property added": _required_added,
}


@pytest.fixture
def registry(registry_url: str) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": registry_url, "timeout": 30}) as client:
        yield client


def test_released_schemas_register_in_order_and_incompatible_ones_are_refused(
    registry_url: str, registry: SchemaRegistryClient, unique_name: str
) -> None:
    """The released schemas and the current one register in order under BACKWARD_TRANSITIVE,
    set by the publisher; each incompatible change is refused by the registry (409) and by the
    publisher's start-up check, and no refused version is registered."""
    config = {"url": registry_url, "timeout": 30}
    subject = subject_for(unique_name)
    ids = [
        ensure_event_schema(config, unique_name, auto_register=True, schema=path.read_text())
        for path in _released_in_order()
    ]
    ids.append(ensure_event_schema(config, unique_name, auto_register=True, schema=schema_text()))

    assert registry.get_compatibility(subject) == "BACKWARD_TRANSITIVE"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    versions = registry.get_versions(subject)
    for name, change in INCOMPATIBLE.items():
        bad = copy.deepcopy(event_schema())
        change(bad)
        text = schema_text(bad)

        assert registry.test_compatibility(subject, Schema(text, "JSON")) is False, name
        with pytest.raises(SchemaRegistryError) as refused:
            registry.register_schema(subject, Schema(text, "JSON"))
        assert refused.value.http_status_code == 409, name
        with pytest.raises(SchemaError, match="refuses the event schema") as stopped:
            ensure_event_schema(config, unique_name, auto_register=True, schema=text)
        assert subject in str(stopped.value)
        assert "BACKWARD_TRANSITIVE" in str(stopped.value)
        assert "\n" not in str(stopped.value)
    assert registry.get_versions(subject) == versions


def test_a_compatible_new_version_registers(
    registry_url: str, registry: SchemaRegistryClient, unique_name: str
) -> None:
    """A new optional field (what a Webex addition looks like) passes the registry's check."""
    config = {"url": registry_url, "timeout": 30}
    first = ensure_event_schema(config, unique_name, auto_register=True)
    newer = copy.deepcopy(event_schema())
    newer["properties"]["cdr"]["properties"]["new_field"] = {"type": ["string", "null"]}

    second = ensure_event_schema(config, unique_name, auto_register=True, schema=schema_text(newer))

    assert second != first
    assert len(registry.get_versions(subject_for(unique_name))) == 2


def test_unmanaged_leaves_the_operators_rule_alone(
    registry_url: str, registry: SchemaRegistryClient, unique_name: str
) -> None:
    """With SCHEMA_COMPATIBILITY=UNMANAGED the publisher neither sets the rule nor asks first:
    the operator's NONE stays, and the registry's answer alone decides."""
    config = {"url": registry_url, "timeout": 30}
    subject = subject_for(unique_name)
    registry.set_compatibility(subject, "NONE")
    ensure_event_schema(config, unique_name, auto_register=True, compatibility="UNMANAGED")
    bad = copy.deepcopy(event_schema())
    _type_changed(bad)

    ensure_event_schema(
        config, unique_name, auto_register=True, schema=schema_text(bad), compatibility="UNMANAGED"
    )

    assert registry.get_compatibility(subject) == "NONE"
    assert len(registry.get_versions(subject)) == 2


def test_daemon_start_up_stops_on_a_schema_the_registry_refuses(
    registry_url: str,
    registry: SchemaRegistryClient,
    bootstrap_servers: str,
    unique_name: str,
    tmp_path: Path,
) -> None:
    """The subject already holds a newer schema (an extra field) that ours would break: the
    daemon stops at start-up with exit 1 and one line naming the subject, no traceback."""
    env = DaemonEnv(bootstrap_servers, registry_url, "http://127.0.0.1:9", prefix=unique_name)
    subject = subject_for(env.events_topic)
    newer = copy.deepcopy(event_schema())
    newer["properties"]["cdr"]["properties"]["future_field"] = {"type": ["string", "null"]}
    registry.register_schema(subject, Schema(schema_text(newer), "JSON"))
    log = tmp_path / "daemon.log"

    proc = env.start(log)
    code = proc.wait(timeout=120)

    text = log.read_text()
    lines = [line for line in text.splitlines() if "refuses the event schema" in line]
    assert code == 1, text[-2000:]
    assert len(lines) == 1, text[-2000:]
    assert subject in lines[0]
    assert "BACKWARD_TRANSITIVE" in lines[0]
    assert "Traceback" not in text
    assert len(registry.get_versions(subject)) == 1
    assert json.loads(registry.get_latest_version(subject).schema.schema_str or "{}") == newer
