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

from publisher.errors import SchemaError, SchemaRegistryUnavailableError
from publisher.event_schema import backward_incompatibilities, schema_text
from publisher.registry_http import RegistryHttp, RegistryRefusedError, RegistryUnreachableError

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
        with RegistryHttp(registry_config) as client:
            if not auto_register:
                return _registered(client, subject, text)
            action = "register"
            managed = compatibility.upper() != UNMANAGED
            if managed:
                _set_compatibility(client, subject, compatibility.upper())
            known = client.lookup_schema(subject, text)
            if known is not None:
                return known
            if managed and not client.test_compatibility(subject, text):
                raise SchemaError(_refusal(client, subject, text, compatibility.upper()))
            return client.register_schema(subject, text)
    except RegistryRefusedError as exc:
        if exc.status == 409:
            raise SchemaError(
                f"schema registry refused to register the event schema under {subject!r}: it is "
                f"not compatible with the registered versions ({exc.message})"
            ) from exc
        raise SchemaError(
            f"schema registry refused to {action} the event schema under {subject!r}: "
            f"{exc.message} (HTTP {exc.status}, code {exc.code})"
        ) from exc
    except RegistryUnreachableError as exc:
        raise SchemaRegistryUnavailableError(f"schema registry unreachable: {exc}") from exc


def _registered(client: RegistryHttp, subject: str, text: str) -> int:
    """The id of exactly this schema, which the operator registered (auto-register off)."""
    found = client.lookup_schema(subject, text)
    if found is None:
        raise RegistryRefusedError(404, 40403, "the exact event schema is not registered")
    return found


def _set_compatibility(client: RegistryHttp, subject: str, level: str) -> None:
    """Make the subject's compatibility ``level``. Several jobs of one process (the live stream,
    replays) may do this at once: Apicurio then answers the second writer's PUT with 409 ("A rule
    named 'COMPATIBILITY' already exists"), so a 409 is answered by reading the level again."""
    for attempt in range(3):
        current = client.get_compatibility(subject)
        if current == level:
            return
        try:
            client.set_compatibility(subject, level)
        except RegistryRefusedError as exc:
            if exc.status == 409 and attempt < 2:
                continue  # another writer created the rule between our read and our write
            raise SchemaError(
                f"schema registry refused to set compatibility {level} on {subject!r}: "
                f"{exc.message} (HTTP {exc.status})"
            ) from exc
        log.info(
            "subject compatibility set",
            extra={"subject": subject, "compatibility": level, "was": current},
        )
        return


def _refusal(client: RegistryHttp, subject: str, text: str, level: str) -> str:
    """One line: what the registry refused and, as a hint, what our own checker sees."""
    message = (
        f"schema registry refuses the event schema as a new version of {subject!r} under "
        f"compatibility {level}"
    )
    try:
        latest = json.loads(client.latest_schema_text(subject) or "{}")
        problems = backward_incompatibilities(latest, json.loads(text))
    except (RegistryRefusedError, RegistryUnreachableError, ValueError):
        problems = []
    if problems:
        message += f" (e.g. {'; '.join(problems[:3])})"
    return message + "; publish a compatible schema, or use a new events topic (a new subject)"


def fetch_schema(registry_config: dict[str, Any], schema_id: int) -> dict[str, Any]:
    """The registered schema with this id. Raises SchemaError (unknown id) or
    SchemaRegistryUnavailableError."""
    try:
        with RegistryHttp(registry_config) as client:
            return dict(json.loads(client.schema_text(schema_id) or "{}"))
    except RegistryRefusedError as exc:
        raise SchemaError(
            f"schema registry: schema id {schema_id}: {exc.message} (HTTP {exc.status})"
        ) from exc
    except RegistryUnreachableError as exc:
        raise SchemaRegistryUnavailableError(f"schema registry unreachable: {exc}") from exc
