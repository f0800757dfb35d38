"""Events: every sample becomes a schema-valid framed event; keys, headers and the DLQ path."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import jsonschema
import pytest

from publisher.batch import Topics, build_batch
from publisher.dedup import MarkTable, mark_of
from publisher.event_schema import event_schema
from publisher.events import EventEncoder, Source, build_event, event_key, unframe
from publisher.webex.fields import FIELDS
from publisher.webex.record import Cdr, parse_page, parse_record

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples.json"
SOURCE = Source("stream", "2026-11-28T10:00:00.000Z", "2026-11-28T11:00:00.000Z")
TOPICS = Topics(events="ev", dlq="dlq")


def _samples() -> list[dict[str, object]]:
    items: list[dict[str, object]] = json.loads(SAMPLES.read_text())["items"]
    return items


def _cdr(raw: dict[str, object]) -> Cdr:
    parsed = parse_record(raw)
    assert isinstance(parsed, Cdr), parsed
    return parsed


@pytest.mark.parametrize("index", range(5))
def test_every_sample_frames_and_validates(index: int) -> None:
    """Each sample event validates against the schema (checked again with the reference
    validator) and is framed with magic byte 0 and the schema id."""
    cdr = _cdr(_samples()[index])
    event = build_event(cdr, org_id="org-1", source=SOURCE, replay_id=None)

    framed = EventEncoder(schema_id=42).encode(event)

    assert framed[0] == 0
    assert struct.unpack(">I", framed[1:5]) == (42,)
    schema_id, decoded = unframe(framed)
    assert schema_id == 42
    assert decoded == event
    jsonschema.validate(decoded, event_schema())


def test_event_carries_every_known_field_and_unknown_keys() -> None:
    """The cdr object has all 87 field names (null when absent); unknown keys come through."""
    raw = dict(_samples()[2])
    raw["Brand new key"] = {"nested": 1}
    cdr = _cdr(raw)

    event = build_event(cdr, org_id="org-1", source=SOURCE, replay_id="r1")

    assert set(event["cdr"]) == {field.name for field in FIELDS}
    assert event["unknown_fields"] == {"Brand new key": {"nested": 1}}
    assert event["event_id"] == raw["Report ID"]
    assert event["replay_id"] == "r1"
    assert event["cdr"]["os_type"] is None  # "na" means absent


def test_key_is_the_correlation_id_with_report_id_fallback() -> None:
    """Legs of a call share the key; a record without Correlation ID is keyed by its Report ID."""
    raw = dict(_samples()[2])
    assert event_key(_cdr(raw)) == str(raw["Correlation ID"]).encode()
    raw["Correlation ID"] = ""
    assert event_key(_cdr(raw)) == str(raw["Report ID"]).encode()


def test_batch_drops_duplicates_and_routes_rejects_to_the_dlq() -> None:
    """Already-committed and in-page duplicates are dropped; a bad record goes to the DLQ with
    its raw bytes and reason while the good ones around it are published."""
    good, committed_one = _samples()[2], _samples()[4]
    bad = dict(good, **{"Report ID": "bad-1", "Duration": "abc"})
    body = json.dumps({"items": [good, good, bad, committed_one]}).encode()
    committed = MarkTable()
    committed.add(mark_of(str(committed_one["Report ID"])), hour=1)

    batch = build_batch(
        parse_page(body),
        committed=committed,
        encoder=EventEncoder(1),
        topics=TOPICS,
        org_id="org-1",
        source=SOURCE,
    )

    assert batch.published == 1
    assert batch.duplicates == 2
    assert batch.dlq == 1
    dlq = [r for r in batch.records if r.topic == "dlq"]
    assert dlq[0].key == b"bad-1"
    assert json.loads(dlq[0].value or b"")["Duration"] == "abc"
    reason = dict(dlq[0].headers or [])["dlq_reason"]
    assert b"duration" in reason
    assert mark_of("bad-1") in batch.marks


def test_the_reference_path_still_validates_with_its_lazily_compiled_validator() -> None:
    """The validator is compiled on the first event that needs it, not at start-up; an event
    that breaks the schema is refused all the same, naming where."""
    from publisher.events import InvalidEventError

    encoder = EventEncoder(3)
    event = build_event(_cdr(_samples()[0]), org_id="org-1", source=SOURCE, replay_id=None)
    assert unframe(encoder.encode(event))[0] == 3
    event["schema_version"] = "one"
    with pytest.raises(InvalidEventError, match="schema_version"):
        encoder.encode(event)
