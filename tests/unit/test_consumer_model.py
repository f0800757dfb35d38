"""The consumer kit's typed event: generated from the field table like the schema, and equal to
it field by field; real events decode into it with their unknown keys kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from publisher.consumer.codegen import model_source
from publisher.consumer.decoder import EventDecoder
from publisher.consumer.fields import CdrFields
from publisher.consumer.model import CdrEvent
from publisher.errors import DecodeError
from publisher.event_schema import event_schema
from publisher.events import Source, build_event
from publisher.webex.record import Cdr, parse_record

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data" / "samples.json"
SOURCE = Source("stream", "2026-11-28T10:00:00.000Z", "2026-11-28T11:00:00.000Z")
_JSON_TYPE = {"str": "string", "int": "integer", "bool": "boolean", "datetime": "string"}


def _sample_events() -> list[dict[str, Any]]:
    events = []
    for raw in json.loads(SAMPLES.read_text())["items"]:
        cdr = parse_record(raw)
        assert isinstance(cdr, Cdr)
        built = build_event(cdr, org_id="org-1", source=SOURCE, replay_id=None)
        events.append(orjson.loads(orjson.dumps(built)))  # as a consumer receives it
    return events


def test_committed_model_matches_the_generator() -> None:
    """publisher/consumer/fields.py is exactly what the field table generates (`make schema`)."""
    committed = (ROOT / "publisher" / "consumer" / "fields.py").read_text()

    assert committed == model_source()


def test_model_fields_equal_the_schema_properties_with_the_same_types() -> None:
    """Every cdr property of the schema is a model field of the matching type, and no more."""
    properties = event_schema()["properties"]["cdr"]["properties"]

    assert list(CdrFields.model_fields) == list(properties)
    for name, info in CdrFields.model_fields.items():
        python_type = str(info.annotation).replace("datetime.", "").split(" | ")[0]
        python_type = python_type.removeprefix("<class '").removesuffix("'>")
        assert _JSON_TYPE[python_type] in properties[name]["type"], name


def test_envelope_fields_are_the_schema_required_properties() -> None:
    """The typed envelope has exactly the top-level properties the schema requires."""
    assert set(CdrEvent.model_fields) == set(event_schema()["required"])


@pytest.mark.parametrize("index", range(5))
def test_every_sample_event_decodes_into_the_typed_model(index: int) -> None:
    """Each sample event becomes a CdrEvent: timestamps as UTC datetimes, booleans and integers
    typed, unknown Webex keys kept as they came."""
    body = _sample_events()[index]
    body["unknown_fields"] = {"Brand new key": "kept"}

    event = CdrEvent.model_validate(body)

    assert event.event_id == body["event_id"]
    assert event.unknown_fields == {"Brand new key": "kept"}
    if body["cdr"]["start_time"] is not None:
        assert isinstance(event.cdr.start_time, datetime)
        assert event.cdr.start_time.tzinfo is not None
        assert event.cdr.start_time.utcoffset() == UTC.utcoffset(None)
    assert event.cdr.answered in (True, False, None)


def test_fields_of_a_newer_schema_version_are_kept() -> None:
    """An event written with a newer schema (a field this model lacks) keeps that field."""
    body = _sample_events()[0]
    body["cdr"]["field_added_later"] = "x"

    event = CdrEvent.model_validate(body)

    assert event.cdr.model_extra == {"field_added_later": "x"}


def test_decoder_refuses_a_value_that_is_not_our_wire_format() -> None:
    """Bytes without magic byte 0 and a schema id are a DecodeError, before any registry call."""
    decoder = EventDecoder({"url": "http://127.0.0.1:9"})
    try:
        with pytest.raises(DecodeError, match="wire-format"):
            decoder.decode(b'{"event_id": "x"}')
        with pytest.raises(DecodeError, match="wire-format"):
            decoder.decode(b"\x00\x00")
    finally:
        decoder.close()
