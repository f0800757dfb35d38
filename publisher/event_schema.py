"""The event's JSON Schema, generated from the field table, and the backward-compatibility rule.

Pure. ``schemas/cdr-event.schema.json`` is this module's output, committed; a unit test fails when
they differ (regenerate with ``make schema``). Released versions live in ``schemas/released/``; a
new version must be backward compatible with the newest released one (every event the old schema
accepts, the new one accepts too), which :func:`backward_incompatibilities` checks structurally.
"""

from __future__ import annotations

import json
from typing import Any

from publisher.webex.fields import FIELDS, Kind

SCHEMA_VERSION = 1
EVENT_TYPE = "webex.calling.cdr"
SCHEMA_ID_URI = "https://cdr-publisher.dev/schemas/cdr-event.schema.json"
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"

_KIND_SCHEMA: dict[Kind, dict[str, Any]] = {
    Kind.STRING: {"type": ["string", "null"]},
    Kind.OPEN_ENUM: {"type": ["string", "null"]},
    Kind.INTEGER: {"type": ["integer", "null"]},
    Kind.BOOLEAN: {"type": ["boolean", "null"]},
    Kind.TIMESTAMP: {"type": ["string", "null"], "pattern": TIMESTAMP_PATTERN},
}


def _timestamp(nullable: bool) -> dict[str, Any]:
    return {"type": ["string", "null"] if nullable else "string", "pattern": TIMESTAMP_PATTERN}


def event_schema() -> dict[str, Any]:
    """The JSON Schema (draft-07) of one CDR event."""
    cdr_properties = {
        field.name: {**_KIND_SCHEMA[field.kind], "description": f"Webex key {field.raw_key!r}"}
        for field in FIELDS
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID_URI,
        "title": "WebexCallingCdrEvent",
        "description": (
            "One Webex Calling detailed call record. Every known field is present under its "
            "wxc_sdk name (null when Webex sent it empty); keys Webex added after this schema "
            "are kept as they came in unknown_fields."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": [
            "event_id",
            "event_type",
            "schema_version",
            "org_id",
            "correlation_id",
            "report_time",
            "source",
            "replay_id",
            "cdr",
            "unknown_fields",
        ],
        "properties": {
            "event_id": {"type": "string", "minLength": 1, "description": "the Report ID"},
            "event_type": {"const": EVENT_TYPE},
            "schema_version": {"type": "integer", "minimum": 1},
            "org_id": {"type": "string", "minLength": 1},
            "correlation_id": {"type": ["string", "null"]},
            "report_time": _timestamp(nullable=True),
            "source": {
                "type": "object",
                "additionalProperties": False,
                "required": ["endpoint", "window_start", "window_end"],
                "properties": {
                    "endpoint": {"enum": ["stream", "feed"]},
                    "window_start": _timestamp(nullable=False),
                    "window_end": _timestamp(nullable=False),
                },
            },
            "replay_id": {"type": ["string", "null"]},
            "cdr": {
                "type": "object",
                "additionalProperties": False,
                # Events always carry every known field (null when absent); only report_id is
                # required so that adding a field later stays backward compatible.
                "required": ["report_id"],
                "properties": cdr_properties,
            },
            "unknown_fields": {
                "type": "object",
                "description": "raw keys this schema does not know, with their values as sent",
            },
        },
    }


def schema_text(schema: dict[str, Any] | None = None) -> str:
    """The canonical text of a schema: what is committed and what is registered."""
    return json.dumps(schema if schema is not None else event_schema(), indent=2) + "\n"


# --- backward compatibility ------------------------------------------------------------------


def _types(node: dict[str, Any]) -> set[str] | None:
    """The JSON types a node allows, or None for 'anything'."""
    if "const" in node:
        return {"const:" + json.dumps(node["const"])}
    if "enum" in node:
        return {"enum:" + json.dumps(v) for v in node["enum"]}
    declared = node.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def backward_incompatibilities(
    old: dict[str, Any], new: dict[str, Any], path: str = "$"
) -> list[str]:
    """Why data valid under ``old`` could be invalid under ``new`` (empty: compatible).

    Conservative: it understands the constructs our schema uses (types, const, enum, pattern,
    required, properties, additionalProperties) and reports any change it cannot prove safe.
    """
    problems: list[str] = []
    old_types, new_types = _types(old), _types(new)
    if new_types is not None and (old_types is None or not old_types <= new_types):
        problems.append(f"{path}: allowed types narrowed from {old_types} to {new_types}")
    for keyword in ("pattern", "minLength", "minimum"):
        if keyword in new and new.get(keyword) != old.get(keyword):
            problems.append(f"{path}: {keyword} changed to {new[keyword]!r}")
    old_required = set(old.get("required", []))
    for name in sorted(set(new.get("required", [])) - old_required):
        problems.append(f"{path}: {name!r} became required")
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    old_open = old.get("additionalProperties", True) is not False
    new_open = new.get("additionalProperties", True) is not False
    if old_open and not new_open:
        problems.append(f"{path}: additional properties no longer allowed")
    for name, old_node in old_props.items():
        if name not in new_props:
            if not new_open:
                problems.append(f"{path}.{name}: removed from a closed object")
            continue
        problems.extend(backward_incompatibilities(old_node, new_props[name], f"{path}.{name}"))
    if old_open:
        for name in sorted(set(new_props) - set(old_props)):
            # Old data may carry anything under a new name; only an unconstrained node is safe.
            if _types(new_props[name]) is not None:
                problems.append(f"{path}.{name}: new constraint on a name old data may use freely")
    return problems


if __name__ == "__main__":  # pragma: no cover - `make schema`
    print(schema_text(), end="")
