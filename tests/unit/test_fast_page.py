"""The fast page path against the reference parser, its oracle: every test runs twice, with the
compiled reader (publisher.webex.native) first and with the msgspec path alone.

What it must show (issue 13): the same events byte for byte, the same DLQ entries and counts, on
pages mixing key spellings, unknown keys and malformed records; every event it makes valid
against the schema (checked here with the compiled validator, so that production need not check
each one); and one odd record handled alone, without slowing its page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.pages import generate_records
from publisher.batch import Batch, Topics, build_batch
from publisher.dedup import MarkTable
from publisher.event_schema import event_schema
from publisher.events import EventEncoder, Source, unframe
from publisher.webex import native
from publisher.webex.fields import FIELDS
from publisher.webex.page import Rows
from publisher.webex.record import Cdr, ParsedPage, parse_page, parse_page_reference
from tests.unit.test_record_properties import json_values, plausible_values, raw_keys

SAMPLES = json.loads((Path(__file__).parents[1] / "data" / "samples.json").read_text())["items"]
SOURCE = Source("stream", "2026-11-28T10:00:00.000Z", "2026-11-28T11:00:00.000Z")
TOPICS = Topics(events="ev", dlq="dlq")
VALIDATOR = jsonschema_rs.validator_for(event_schema())
BASE = generate_records(40, seed=3)
# Hypothesis runs many examples per call of the test function: the path fixture below is set
# once per call and stays the same for its examples, which is what these tests want.
SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@pytest.fixture(autouse=True, params=["native", "msgspec"])
def fast_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The compiled reader, or the msgspec path as where the extension is not installed."""
    if request.param == "native":
        assert native.AVAILABLE, "the native extension is not built: run make venv"
    else:
        monkeypatch.setattr(native, "AVAILABLE", False)
    return str(request.param)


def _batch(page: ParsedPage, org_id: str = "org-1", replay_id: str | None = None) -> Batch:
    return build_batch(
        page,
        committed=MarkTable(),
        encoder=EventEncoder(9),
        topics=TOPICS,
        org_id=org_id,
        source=SOURCE,
        replay_id=replay_id,
    )


def _dlq(batch: Batch) -> list[tuple[Any, ...]]:
    # Raw bytes compared as JSON: the fast path keeps each record's bytes exactly as received,
    # the reference re-encodes what orjson decoded.
    return [
        (r.topic, r.key, sorted(r.headers or []), orjson.loads(r.value or b"null"))
        for r in batch.records
    ]


def _assert_same(body: bytes, org_id: str = "org-1", replay_id: str | None = None) -> Batch:
    fast_page, reference_page = parse_page(body), parse_page_reference(body)
    assert list(fast_page.records) == list(reference_page.records)
    assert [(r.report_id, r.reason) for r in fast_page.rejected] == [
        (r.report_id, r.reason) for r in reference_page.rejected
    ]
    fast, reference = (
        _batch(fast_page, org_id, replay_id),
        _batch(reference_page, org_id, replay_id),
    )
    assert fast.events == reference.events  # topic, keys, values (bytes), headers
    assert fast.marks == reference.marks
    assert _dlq(fast) == _dlq(reference)
    assert (fast.published, fast.dlq, fast.duplicates, fast.unknown_keys) == (
        reference.published,
        reference.dlq,
        reference.duplicates,
        reference.unknown_keys,
    )
    assert fast.new_enum_values == reference.new_enum_values
    assert sorted(fast.release_times) == sorted(reference.release_times)
    return fast


def _valid(batch: Batch) -> None:
    for value in batch.events.values:
        _schema_id, event = unframe(value)
        errors = [e.message for e in VALIDATOR.iter_errors(event)]
        assert not errors, errors


def test_a_page_of_mixed_spellings_unknown_keys_and_a_malformed_record_is_the_reference() -> None:
    """Key spellings of two kinds, unknown keys (one record with two), absent values of every
    spelling, a timestamp in the documented space form, a numeric string, and one malformed
    record: the fast path yields exactly the reference's records, events, DLQ entries, counts."""
    records: list[Any] = [dict(r) for r in BASE[:12]]
    records[1] = {("call TYPE" if k == "Call type" else k): v for k, v in records[1].items()}
    records[2] = {
        ("Hold Duration" if k == "Hold duration" else k): v for k, v in records[2].items()
    }
    records[3]["Brand new key"] = {"nested": [1, 2.5e16, "", None]}
    records[4]["Brand new key"] = ""
    records[4]["Another new key"] = "NA"
    records[5]["Start time"] = "2023-10-12 21:22:32.621"
    records[6]["Duration"] = "abc"  # malformed: the DLQ
    records[7]["WxCC consult merge status"] = "NA"  # a value there, not absent
    records[8]["Ring duration"] = " 8 "
    records[9]["Answered"] = True
    records[10]["Correlation ID"] = "NA"
    records.append(SAMPLES[2])
    records.append(records[0])  # a duplicate within the page
    body = orjson.dumps({"items": records})

    batch = _assert_same(body)

    assert batch.dlq == 1
    assert batch.duplicates == 1
    assert batch.unknown_keys == 3
    _valid(batch)


def test_absent_looking_org_and_replay_ids_change_nothing() -> None:
    """An org id or replay id spelled like an absent value is kept as it is, like the reference."""
    body = orjson.dumps({"items": BASE[:5]})

    _assert_same(body, org_id="NA", replay_id="")


def test_one_odd_record_is_read_by_the_reference_alone() -> None:
    """A page with one record the fast path cannot vouch for: that record (only) is a reference
    Cdr, every other stays a fast row; the events are still the reference's."""
    records = [dict(r) for r in BASE[:30]]
    records[17]["Hold duration"] = " 12 "

    page = parse_page(orjson.dumps({"items": records}))

    assert isinstance(page.records, Rows)
    kinds = [isinstance(item, Cdr) for item in page.records.items]
    assert kinds.count(True) == 1
    assert kinds.index(True) == 17
    _assert_same(orjson.dumps({"items": records}))


# Whatever a record may look like: known keys in any spelling, unknown keys, any values.
mutations = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=len(BASE) - 1),
        st.sampled_from(["set", "respell", "unknown", "delete"]),
        raw_keys,
        plausible_values,
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=SLOW_OK)
@given(mutations, st.integers(min_value=1, max_value=len(BASE)))
def test_any_page_yields_the_reference_and_every_event_is_valid(
    changes: list[tuple[int, str, str, Any]], size: int
) -> None:
    """Realistic records changed at random (values of any kind, spellings, unknown keys, keys
    removed): the fast path's output equals the reference's byte for byte, and every event it
    makes validates against the schema with the compiled validator."""
    records = [dict(r) for r in BASE[:size]]
    for index, what, key, value in changes:
        record = records[index % size]
        if what == "set":
            record[key] = value
        elif what == "respell" and record:
            old = sorted(record)[len(key) % len(record)]
            records[index % size] = {(key if k == old else k): v for k, v in record.items()}
        elif what == "unknown":
            record[f"Unknown {key}"] = value
        else:
            record.pop(sorted(record)[len(key) % len(record)], None) if record else None
    body = orjson.dumps({"items": records})

    _valid(_assert_same(body))


@settings(max_examples=100, deadline=None, suppress_health_check=SLOW_OK)
@given(st.lists(json_values, max_size=6))
def test_any_json_items_yield_the_reference(items: list[Any]) -> None:
    """Items that are not records at all (any JSON value): the same rejections as the
    reference, nothing raised."""
    _assert_same(orjson.dumps({"items": [*items, BASE[0]]}))


def test_every_known_field_reaches_the_event_in_table_order() -> None:
    """The fast event's cdr object lists all 87 fields in the table's order (nulls included)."""
    (value,) = _batch(parse_page(orjson.dumps({"items": [SAMPLES[2]]}))).events.values

    _schema_id, event = unframe(value)

    assert list(event["cdr"]) == [field.name for field in FIELDS]


def test_two_unknown_keys_keep_each_records_own_order_on_both_paths() -> None:
    """Records with the same two unknown keys in different orders: each event lists them in its
    own record's order, on the fast path and the reference alike (the reference's per-size plan
    cache used to impose the first record's order on the next)."""
    first, second = dict(BASE[0]), dict(BASE[1])
    first.update({"New one": 1, "New two": 2})
    second.update({"New two": 2, "New one": 1})
    body = orjson.dumps({"items": [first, second, first | {"Report ID": "again"}]})

    batch = _assert_same(body)

    orders = [list(unframe(value)[1]["unknown_fields"]) for value in batch.events.values]
    assert orders == [["New one", "New two"], ["New two", "New one"], ["New one", "New two"]]


def test_a_page_cut_into_transactions_stays_fast_and_makes_the_same_events() -> None:
    """split_page (BATCH_MAX_RECORDS) slices a fast page into parts that are still fast rows,
    unknown keys and rejected records kept in place, and the parts' events are the whole page's
    in order: cutting a page never sends its records down the reference path."""
    from publisher.task import split_page

    records: list[Any] = [dict(r) for r in BASE[:25]]
    records[3]["Brand new key"] = 1
    records[11]["Duration"] = "abc"  # rejected
    records[20]["Brand new key"] = 2
    page = parse_page(orjson.dumps({"items": records}))

    parts = split_page(page, 7)

    assert [len(p.records) + len(p.rejected) for p in parts] == [7, 7, 7, 4]
    assert all(isinstance(p.records, Rows) for p in parts)
    assert not any(isinstance(i, Cdr) for p in parts for i in p.records.items)  # type: ignore[attr-defined]
    whole = _batch(page)
    cut = [_batch(p) for p in parts]
    assert [v for b in cut for v in b.events.values] == whole.events.values
    assert sum(b.dlq for b in cut) == whole.dlq == 1
    assert sum(b.unknown_keys for b in cut) == whole.unknown_keys == 2


def test_a_page_with_an_event_too_large_keeps_page_order_for_events_and_dlq() -> None:
    """One fast record whose event does not fit a message, a record the reference parser reads
    on either side of it, and a duplicate: the fast path (which then goes record by record)
    gives the reference's events and DLQ entries in the same order."""
    records: list[Any] = [dict(r) for r in BASE[:10]]
    records[2]["Hold duration"] = " 12 "  # the reference reads it
    records[4]["Location"] = "x" * 6_000  # too large for the limit below
    records[7]["Ring duration"] = " 3 "  # the reference reads it
    records.append(records[1])  # a duplicate
    body = orjson.dumps({"items": records})
    encoder = EventEncoder(9, max_message_bytes=8_000)

    def batch(page: ParsedPage) -> Batch:
        return build_batch(
            page, committed=MarkTable(), encoder=encoder, topics=TOPICS, org_id="o",
            source=SOURCE,
        )  # fmt: skip

    fast, reference = batch(parse_page(body)), batch(parse_page_reference(body))

    assert fast.events == reference.events
    # The DLQ entry is the event's own JSON (cut to fit): the same bytes on both paths.
    assert fast.records == reference.records
    assert fast.marks == reference.marks
    assert (fast.published, fast.dlq, fast.duplicates) == (9, 1, 1)
