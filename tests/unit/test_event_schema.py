"""The committed event schema equals the model's, and stays backward compatible."""

from __future__ import annotations

import json
from pathlib import Path

from publisher.event_schema import backward_incompatibilities, event_schema, schema_text

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schema_matches_the_model() -> None:
    """schemas/cdr-event.schema.json is exactly what the model generates (run `make schema`)."""
    assert (SCHEMAS / "cdr-event.schema.json").read_text() == schema_text()


def test_schema_is_backward_compatible_with_the_last_release() -> None:
    """Every event the newest released schema accepts, the current schema accepts too."""
    released = sorted((SCHEMAS / "released").glob("cdr-event.v*.schema.json"))
    assert released, "no released schema to compare with"
    newest = json.loads(released[-1].read_text())

    assert backward_incompatibilities(newest, event_schema()) == []


def test_checker_catches_a_removed_field() -> None:
    """Removing a known field from the closed cdr object is reported."""
    new = event_schema()
    del new["properties"]["cdr"]["properties"]["duration"]

    problems = backward_incompatibilities(event_schema(), new)

    assert any("duration" in p for p in problems)


def test_checker_catches_a_narrowed_type_and_a_new_required_field() -> None:
    """A type that no longer allows null, or a newly required property, is incompatible."""
    new = event_schema()
    new["properties"]["cdr"]["properties"]["duration"]["type"] = "integer"
    new["properties"]["cdr"]["required"].append("user")

    problems = backward_incompatibilities(event_schema(), new)

    assert any("duration" in p and "narrowed" in p for p in problems)
    assert any("'user' became required" in p for p in problems)


def test_adding_an_optional_field_is_compatible() -> None:
    """A new nullable field (Webex added one) keeps the schema backward compatible."""
    new = event_schema()
    new["properties"]["cdr"]["properties"]["new_field"] = {"type": ["string", "null"]}

    assert backward_incompatibilities(event_schema(), new) == []
