"""Registering (or checking) the event schema in a Confluent-compatible Schema Registry."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

# The registry client runs on httpx or its fork httpx2, whichever this Python gets; its compat
# module names the one in use, so transport errors are caught whichever it is.
from confluent_kafka.schema_registry.common._httpx_compat import httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError

from publisher.errors import SchemaError, SchemaRegistryUnavailableError
from publisher.event_schema import schema_text


def subject_for(topic: str) -> str:
    """TopicNameStrategy: the subject of a topic's values."""
    return f"{topic}-value"


def ensure_event_schema(
    registry_config: dict[str, Any], topic: str, *, auto_register: bool, schema: str | None = None
) -> int:
    """The schema id events are framed with.

    With ``auto_register`` the schema is registered (idempotent: the same text returns the same
    id); the registry refuses an incompatible version, which stops start-up. Without it the exact
    schema must already be registered under the subject.
    """
    text = schema or schema_text()
    subject = subject_for(topic)
    try:
        with SchemaRegistryClient(registry_config) as client:
            if auto_register:
                return int(client.register_schema(subject, Schema(text, schema_type="JSON")))
            registered = client.lookup_schema(subject, Schema(text, schema_type="JSON"))
            return int(registered.schema_id)
    except SchemaRegistryError as exc:
        action = "register" if auto_register else "find"
        raise SchemaError(
            f"schema registry refused to {action} the event schema under {subject!r}: "
            f"{exc.error_message} (HTTP {exc.http_status_code}, code {exc.error_code})"
        ) from exc
    except httpx.HTTPError as exc:
        raise SchemaRegistryUnavailableError(f"schema registry unreachable: {exc}") from exc


def fetch_schema(registry_config: dict[str, Any], schema_id: int) -> dict[str, Any]:
    with SchemaRegistryClient(registry_config) as client:
        return dict(json.loads(client.get_schema(schema_id).schema_str))
