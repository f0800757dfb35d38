"""Registering (or checking) the event schema in a Confluent-compatible Schema Registry.

At registration the registry, not only our own checker, guards the subject: its compatibility is
set to ``SCHEMA_COMPATIBILITY`` (``PUT /config/<subject>``; Apicurio's ccompat API keeps it as the
artifact's COMPATIBILITY rule), a new version is first put to
``POST /compatibility/subjects/<subject>/versions/latest``, and a refusal (there, or a 409 from the
registration itself) stops start-up with one line naming the subject and the level.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

# The registry client runs on httpx or its fork httpx2, whichever this Python gets; its compat
# module names the one in use, so transport errors are caught whichever it is.
from confluent_kafka.schema_registry.common._httpx_compat import httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError

from publisher.errors import SchemaError, SchemaRegistryUnavailableError
from publisher.event_schema import backward_incompatibilities, schema_text

log = logging.getLogger("publisher.registry")

UNMANAGED = "UNMANAGED"
"""The SCHEMA_COMPATIBILITY value that leaves the subject's rule to the operator."""
DEFAULT_COMPATIBILITY = "BACKWARD_TRANSITIVE"


def subject_for(topic: str) -> str:
    """TopicNameStrategy: the subject of a topic's values."""
    return f"{topic}-value"


def ensure_event_schema(
    registry_config: dict[str, Any],
    topic: str,
    *,
    auto_register: bool,
    schema: str | None = None,
    compatibility: str = DEFAULT_COMPATIBILITY,
) -> int:
    """The schema id events are framed with.

    With ``auto_register`` the subject's compatibility is set (unless ``UNMANAGED``), the schema
    is looked up (the same text keeps its id), and a new version is registered only after the
    registry says it is compatible. Without it the exact schema must already be registered.
    Raises SchemaError (refused: not retriable) or SchemaRegistryUnavailableError (retriable).
    """
    text = schema or schema_text()
    subject = subject_for(topic)
    action = "find"
    try:
        with SchemaRegistryClient(registry_config) as client:
            if not auto_register:
                return int(
                    client.lookup_schema(subject, Schema(text, schema_type="JSON")).schema_id
                )
            action = "register"
            managed = compatibility.upper() != UNMANAGED
            if managed:
                _set_compatibility(client, subject, compatibility.upper())
            known = _lookup(client, subject, text)
            if known is not None:
                return known
            if managed and not _compatible(client, subject, text):
                raise SchemaError(_refusal(client, subject, text, compatibility.upper()))
            return int(client.register_schema(subject, Schema(text, schema_type="JSON")))
    except SchemaRegistryError as exc:
        if exc.http_status_code == 409:
            raise SchemaError(
                f"schema registry refused to register the event schema under {subject!r}: it is "
                f"not compatible with the registered versions ({exc.error_message})"
            ) from exc
        raise SchemaError(
            f"schema registry refused to {action} the event schema under {subject!r}: "
            f"{exc.error_message} (HTTP {exc.http_status_code}, code {exc.error_code})"
        ) from exc
    except httpx.HTTPError as exc:
        raise SchemaRegistryUnavailableError(f"schema registry unreachable: {exc}") from exc


def _set_compatibility(client: SchemaRegistryClient, subject: str, level: str) -> None:
    """Make the subject's compatibility ``level``. Several jobs of one process (the live stream,
    replays) may do this at once: Apicurio then answers the second writer's PUT with 409 ("A rule
    named 'COMPATIBILITY' already exists"), so a 409 is answered by reading the level again."""
    for attempt in range(3):
        try:
            current: str | None = client.get_compatibility(subject)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                raise
            current = None
        if current == level:
            return
        try:
            client.set_compatibility(subject, level)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409 and attempt < 2:
                continue  # another writer created the rule between our read and our write
            raise SchemaError(
                f"schema registry refused to set compatibility {level} on {subject!r}: "
                f"{exc.error_message} (HTTP {exc.http_status_code})"
            ) from exc
        log.info(
            "subject compatibility set",
            extra={"subject": subject, "compatibility": level, "was": current},
        )
        return


def _lookup(client: SchemaRegistryClient, subject: str, text: str) -> int | None:
    """The id of exactly this schema under the subject, or None when it is not registered."""
    try:
        registered = client.lookup_schema(subject, Schema(text, schema_type="JSON"))
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            return None
        raise
    return int(registered.schema_id) if registered.schema_id is not None else None


def _compatible(client: SchemaRegistryClient, subject: str, text: str) -> bool:
    try:
        return bool(client.test_compatibility(subject, Schema(text, schema_type="JSON")))
    except SchemaRegistryError as exc:
        # Confluent answers 404 for a subject with no version yet; Apicurio answers compatible.
        if exc.http_status_code == 404:
            return True
        raise


def _refusal(client: SchemaRegistryClient, subject: str, text: str, level: str) -> str:
    """One line: what the registry refused and, as a hint, what our own checker sees."""
    message = (
        f"schema registry refuses the event schema as a new version of {subject!r} under "
        f"compatibility {level}"
    )
    try:
        latest = json.loads(client.get_latest_version(subject).schema.schema_str or "{}")
        problems = backward_incompatibilities(latest, json.loads(text))
    except (SchemaRegistryError, ValueError):
        problems = []
    if problems:
        message += f" (e.g. {'; '.join(problems[:3])})"
    return message + "; publish a compatible schema, or use a new events topic (a new subject)"


def fetch_schema(registry_config: dict[str, Any], schema_id: int) -> dict[str, Any]:
    """The registered schema with this id. Raises SchemaError (unknown id) or
    SchemaRegistryUnavailableError."""
    try:
        with SchemaRegistryClient(registry_config) as client:
            return dict(json.loads(client.get_schema(schema_id).schema_str or "{}"))
    except SchemaRegistryError as exc:
        raise SchemaError(
            f"schema registry: schema id {schema_id}: {exc.error_message} "
            f"(HTTP {exc.http_status_code})"
        ) from exc
    except httpx.HTTPError as exc:
        raise SchemaRegistryUnavailableError(f"schema registry unreachable: {exc}") from exc
