"""The record parser: samples convert, every key is accounted for, values are typed by kind."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from publisher.errors import WebexBadPageError
from publisher.webex.fields import FIELDS_BY_KEY, NA_IS_A_VALUE, normalise_key
from publisher.webex.record import (
    Cdr,
    ParsedPage,
    RejectedRecord,
    format_timestamp,
    parse_page,
    parse_record,
    parse_timestamp,
)

SAMPLES_PATH = Path(__file__).parents[1] / "data" / "samples.json"
SAMPLES: list[dict[str, Any]] = orjson.loads(SAMPLES_PATH.read_bytes())["items"]


def _cdr(obj: object) -> Cdr:
    result = parse_record(obj)
    assert isinstance(result, Cdr), getattr(result, "reason", result)
    return result


def _rejected(obj: object) -> RejectedRecord:
    result = parse_record(obj)
    assert isinstance(result, RejectedRecord), result
    return result


def _record(**extra: object) -> dict[str, object]:
    """A minimal valid record plus ``extra`` raw keys."""
    return {"Report ID": "r-1", **extra}


# --- the samples --------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(SAMPLES)))
def test_every_sample_converts_with_every_key_accounted_for(index: int) -> None:
    """Each raw key is a field, absent by rule ("" / "NA" / null), or kept in unknown."""
    item = SAMPLES[index]
    cdr = _cdr(item)

    for raw_key, value in item.items():
        field = FIELDS_BY_KEY.get(normalise_key(raw_key))
        if raw_key in cdr.unknown:
            assert cdr.unknown[raw_key] is value
        elif field is None:
            pytest.fail(f"unknown key {raw_key!r} was dropped")
        elif value in ("", None) or (value in ("NA", "na") and field.name not in NA_IS_A_VALUE):
            assert field.name not in cdr.fields
        else:
            assert field.name in cdr.fields, raw_key
    assert cdr.report_id == item["Report ID"]


def test_the_real_payload_reads_field_by_field() -> None:
    """items[2], a real 87-key response: every present value typed as the rules say."""
    cdr = _cdr(SAMPLES[2])

    assert cdr.fields == {
        "answered": False,
        "direction": "TERMINATING",
        "calling_line_id": "Agent-80945336",
        "start_time": "2026-09-24T07:49:10.939Z",
        "call_type": "SIP_INBOUND",
        "client_type": "SIP",
        "correlation_id": "cf30fa26-7c1a-4099-8ada-b8e57acca6ce",
        "duration": 0,
        "org_uuid": "74983fd5-5c18-45cb-bfcd-507005e05b0f",
        "report_id": "ea9cd4c2-b4e8-3e0f-b518-b14906a6d01a",
        "report_time": "2026-09-24T07:49:10.941Z",
        "site_main_number": "+16693043560",
        "site_timezone": "-420",
        "user_uuid": "18c2c489-2fef-4a15-a4bd-cab7b65d8416",
        "user_type": "User",
        "user": "Pod 0",
        "called_number": "+12542121223",
        "calling_number": "+48123210049",
        "location": "Site1",
        "releasing_party": "Local",
        "site_uuid": "a0ac79b3-d37c-4cae-8ab0-5d4ec85adde8",
        "local_call_id": "29741232:0",
        "network_call_id": "SDen4q701-ef16d7f23c3fb49bcb04e56284058c03-aoh8mj1050",
        "user_number": "+12542121223",
        "call_outcome": "Refusal",
        "call_outcome_reason": "TemporarilyUnavailable",
        "ring_duration": 0,
        "answer_indicator": "No",
        "release_time": "2026-09-24T07:49:10.941Z",
        "pstn_legal_entity": "Broadsoft Adaption LLC",
        "pstn_vendor_org_id": "0b43a1a8-2efd-4892-b301-e7a5a6d2c884",
        "pstn_vendor_name": "Cisco Calling Plans",
        "pstn_provider_id": "3fac3e13-f8de-43b4-ad85-c2862ae3afe8",
        "caller_id_number": "+48123210049",
        "external_caller_id_number": "+12542121223",
        "hold_duration": 0,
        "interaction_id": "815baa45-a282-4b4a-af87-bdd5ebd5358c",
    }
    assert cdr.report_id == "ea9cd4c2-b4e8-3e0f-b518-b14906a6d01a"
    assert cdr.correlation_id == "cf30fa26-7c1a-4099-8ada-b8e57acca6ce"
    assert cdr.unknown == {}
    assert cdr.new_enum_values == ()
    # "na", "NA" and "" are absent; the two undocumented keys are known fields, not unknown.
    for absent in ("os_type", "called_line_id", "public_calling_ip_address", "answer_reason"):
        assert absent not in cdr.fields
    assert "External customer ID" not in cdr.unknown
    assert "Answer reason" not in cdr.unknown


def test_the_synthetic_answered_leg_types_its_values() -> None:
    """items[4]: Answered "true", Ring duration "6" and Hold duration 12 become bool and ints."""
    cdr = _cdr(SAMPLES[4])

    assert cdr.fields["answered"] is True
    assert cdr.fields["ring_duration"] == 6
    assert cdr.fields["hold_duration"] == 12
    assert cdr.fields["duration"] == 184
    assert cdr.fields["os_type"] == "windows"
    assert cdr.timestamp("answer_time") == datetime(2026, 9, 24, 8, 2, 3, 112000, tzinfo=UTC)


def test_the_documented_example_reads_its_odd_release_time_and_new_enum_values() -> None:
    """items[0]: the space-separated Release time is UTC; unlisted enum values are reported."""
    cdr = _cdr(SAMPLES[0])

    assert cdr.fields["release_time"] == "2023-10-12T21:22:32.621Z"
    assert cdr.fields["client_type"] == "SIP_TOLLFREE"
    assert cdr.fields["redirect_reason"] == "Unavailable"
    assert cdr.new_enum_values == (
        ("client_type", "SIP_TOLLFREE"),
        ("redirect_reason", "Unavailable"),
    )
    assert cdr.fields["ring_duration"] == 23


def test_documented_spellings_map_to_the_same_fields_as_real_ones() -> None:
    """items[1] uses the documented case ('Call transfer Time', 'Hold Duration', ...)."""
    cdr = _cdr(SAMPLES[1])

    assert cdr.fields["call_transfer_time"] == "2023-06-05T18:21:29.707Z"
    assert cdr.fields["hold_duration"] == 10
    assert cdr.fields["original_called_party_uuid"] == "e8e730a0-ee04-4df4-90a6-b7072aec9062"
    assert cdr.fields["wxcc_consult_merge_status"] == "Yes"
    assert cdr.unknown == {}


def test_records_with_different_key_sets_interleave_without_mixing() -> None:
    """Parsing the samples in turn, twice, gives the same result each time (plans do not leak)."""
    first = [parse_record(item) for item in SAMPLES]
    second = [parse_record(item) for item in SAMPLES * 2]

    assert second == first * 2


# --- keys ---------------------------------------------------------------------------------------


def test_keys_match_ignoring_case_and_runs_of_white_space() -> None:
    """' report   ID ' and 'RING DURATION' find their fields."""
    cdr = _cdr(
        {" report   ID ": "r-9", "RING\tDURATION": "3", "start TIME": "2024-01-02T03:04:05Z"}
    )

    assert cdr.report_id == "r-9"
    assert cdr.fields == {
        "report_id": "r-9",
        "ring_duration": 3,
        "start_time": "2024-01-02T03:04:05.000Z",
    }


def test_unknown_keys_are_kept_as_they_came() -> None:
    """A key not in the table reaches unknown with its raw key and raw value, nested or not."""
    nested = {"a": [1, 2, {"b": None}]}
    cdr = _cdr(_record(**{"Brand New Field": nested, "Another": "", "Num": 1.5}))

    assert cdr.unknown == {"Brand New Field": nested, "Another": "", "Num": 1.5}
    assert cdr.unknown["Brand New Field"] is nested


@pytest.mark.parametrize(
    ("first", "second"), [("Hold Duration", "Hold duration"), ("Hold duration", "Hold Duration")]
)
def test_the_first_of_two_spellings_fills_the_field(first: str, second: str) -> None:
    """The first spelling seen wins; the other goes to unknown as it came, whatever the order."""
    cdr = _cdr({"Report ID": "r-1", first: 5, second: "7"})

    assert cdr.fields["hold_duration"] == 5
    assert cdr.unknown == {second: "7"}


def test_a_second_spelling_with_an_unreadable_value_is_kept_not_refused() -> None:
    """Only the field-filling spelling is read; the other is data in unknown."""
    cdr = _cdr({"Report ID": "r-1", "Duration": 3, "DURATION": "not a number"})

    assert cdr.fields["duration"] == 3
    assert cdr.unknown == {"DURATION": "not a number"}


# --- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("absent", ["", "NA", "na", None])
def test_empty_na_and_null_are_absent(absent: object) -> None:
    """'' / 'NA' / 'na' / null leave a field out, whatever its kind."""
    cdr = _cdr(
        _record(
            **{
                "OS type": absent,
                "Answered": absent,
                "Duration": absent,
                "Start time": absent,
                "Direction": absent,
            }
        )
    )

    assert cdr.fields == {"report_id": "r-1"}


def test_na_is_a_value_for_wxcc_consult_merge_status() -> None:
    """'NA' / 'na' are kept where the API says they are real values; '' is still absent there."""
    for na in ("NA", "na"):
        cdr = _cdr(_record(**{"WxCC consult merge status": na}))
        assert cdr.fields["wxcc_consult_merge_status"] == na
    empty = _cdr(_record(**{"WxCC consult merge status": ""}))
    assert "wxcc_consult_merge_status" not in empty.fields


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("false", False),
        ("TRUE", True),
        ("False", False),
        (True, True),
        (False, False),
    ],
)
def test_answered_reads_strings_and_booleans(raw: object, expected: bool) -> None:
    """'true'/'false' in any case and JSON booleans become booleans."""
    assert _cdr(_record(Answered=raw)).fields["answered"] is expected


@pytest.mark.parametrize("raw", ["yes", "1", 1, 0.0, [], {}])
def test_answered_refuses_anything_else(raw: object) -> None:
    """A value that is not true or false is a rejection naming the field."""
    assert "answered ('Answered')" in _rejected(_record(Answered=raw)).reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, 0),
        (36, 36),
        (12.0, 12),
        ("0", 0),
        (" 8 ", 8),
        ("12.0", 12),
        ("+4", 4),
        (2**63 - 1, 2**63 - 1),
    ],
)
def test_durations_read_integers_integral_floats_and_numeric_strings(
    raw: object, expected: int
) -> None:
    """Ring duration as a number or a numeric string becomes an int."""
    value = _cdr(_record(**{"Ring duration": raw})).fields["ring_duration"]

    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize(
    "raw",
    ["abc", True, 1.5, -1, "-3", "1e3", "1_000", "٣", float("nan"), float("inf"), 2**63, [], {}],
)
def test_durations_refuse_what_is_not_a_whole_non_negative_number(raw: object) -> None:
    """Text, booleans, fractions, negatives and huge numbers are rejections naming the field."""
    rejected = _rejected(_record(Duration=raw))

    assert rejected.reason.startswith("duration ('Duration'): ")
    assert rejected.report_id == "r-1"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("2026-09-24T07:49:10.939Z", "2026-09-24T07:49:10.939Z"),
        ("2026-09-24T07:49:10Z", "2026-09-24T07:49:10.000Z"),
        ("2026-09-24T07:49:10.9Z", "2026-09-24T07:49:10.900Z"),
        ("2026-09-24T07:49:10.939999999Z", "2026-09-24T07:49:10.939Z"),
        ("2026-09-24T07:49:10.939+00:00", "2026-09-24T07:49:10.939Z"),
        ("2026-09-24T09:49:10.939+02:00", "2026-09-24T07:49:10.939Z"),
        ("2026-09-24T02:19:10.939-0530", "2026-09-24T07:49:10.939Z"),
        ("2026-09-24T07:49:10.939", "2026-09-24T07:49:10.939Z"),
        ("2023-10-12 21:22:32.621", "2023-10-12T21:22:32.621Z"),
        ("2023-10-12 21:22:32", "2023-10-12T21:22:32.000Z"),
    ],
)
def test_timestamps_become_canonical_utc(raw: str, canonical: str) -> None:
    """Every accepted form becomes YYYY-MM-DDTHH:MM:SS.mmmZ in UTC."""
    assert _cdr(_record(**{"Start time": raw})).fields["start_time"] == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "2023-02-30T00:00:00.000Z",
        "2023-13-01T00:00:00.000Z",
        "2023-W41-4T21:22:32.621Z",
        "2023-10-12T25:00:00.000Z",
        "2023-10-12",
        1697145752,
        True,
        {"t": 1},
    ],
)
def test_unreadable_timestamps_are_rejections(raw: object) -> None:
    """Impossible dates, other formats and non-strings are refused, naming the field."""
    assert _rejected(_record(**{"Release time": raw})).reason.startswith(
        "release_time ('Release time'): "
    )


@pytest.mark.parametrize(
    ("raw", "expected"), [(7, "7"), (1.5, "1.5"), (True, "true"), (False, "false"), ("x", "x")]
)
def test_string_fields_keep_scalars_as_text(raw: object, expected: str) -> None:
    """A number or boolean sent for a string field is kept as its string, not refused."""
    assert _cdr(_record(**{"Site timezone": raw})).fields["site_timezone"] == expected


@pytest.mark.parametrize("raw", [[], {}, ["-420"], {"offset": -420}])
def test_string_fields_refuse_objects_and_arrays(raw: object) -> None:
    """An object or array for a known string field is a rejection naming it."""
    assert _rejected(_record(**{"Site timezone": raw})).reason.startswith(
        "site_timezone ('Site timezone'): "
    )


def test_open_enums_keep_new_values_and_report_them() -> None:
    """A value outside the known list is kept as it came and listed in new_enum_values."""
    cdr = _cdr(_record(Direction="SIDEWAYS", **{"Call type": "SIP_INBOUND", "User type": 7}))

    assert cdr.fields["direction"] == "SIDEWAYS"
    assert cdr.fields["user_type"] == "7"
    assert sorted(cdr.new_enum_values) == [("direction", "SIDEWAYS"), ("user_type", "7")]


def test_correlation_id_is_none_when_empty() -> None:
    """An empty Correlation ID is absent, so the caller falls back to the Report ID."""
    assert _cdr(_record(**{"Correlation ID": ""})).correlation_id is None
    assert _cdr(_record(**{"Correlation ID": "c-1"})).correlation_id == "c-1"


# --- rejections ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        ([], "not a JSON object (got an array)"),
        ("x", "not a JSON object (got a string)"),
        (None, "not a JSON object (got null)"),
        (3, "not a JSON object (got a number)"),
        ({}, "report_id ('Report ID'): missing or empty"),
        ({"Report ID": ""}, "report_id ('Report ID'): missing or empty"),
        ({"Report ID": "NA"}, "report_id ('Report ID'): missing or empty"),
        ({"Report ID": "   "}, "report_id ('Report ID'): missing or empty"),
        ({"Report ID": 12}, "report_id ('Report ID'): 12 is not a string"),
        ({"Report ID": None, "Call ID": "c"}, "report_id ('Report ID'): missing or empty"),
    ],
)
def test_records_without_a_readable_report_id_are_refused(obj: object, why: str) -> None:
    """Not an object, or no Report ID string: refused with a one-line reason."""
    rejected = _rejected(obj)

    assert rejected.reason == why
    assert rejected.report_id is None
    assert rejected.raw == orjson.dumps(obj)


def test_a_rejection_lists_every_bad_field_on_one_line() -> None:
    """Two unreadable values: both named, in one line, with the Report ID read."""
    rejected = _rejected(_record(Duration="x\ny", Answered="maybe"))

    assert "\n" not in rejected.reason
    assert "duration ('Duration'): 'x\\ny' is not a whole number" in rejected.reason
    assert "answered ('Answered'): 'maybe' is not true or false" in rejected.reason
    assert rejected.report_id == "r-1"


def test_a_rejection_keeps_the_bytes_it_was_given() -> None:
    """When the caller passes the record's bytes, the rejection carries exactly those."""
    raw = b'{"Report ID" :  "r-1", "Duration": "x"}'

    result = parse_record(orjson.loads(raw), raw)

    assert isinstance(result, RejectedRecord)
    assert result.raw == raw


def test_long_values_are_shortened_in_reasons() -> None:
    """A huge bad value does not make a huge reason."""
    rejected = _rejected(_record(Duration="9" * 50 + "x" * 1000))

    assert len(rejected.reason) < 120


def test_python_objects_that_json_cannot_hold_are_refused_not_raised() -> None:
    """Non-string keys and unserialisable values give a rejection with readable raw bytes."""
    rejected = _rejected({1: "a", "Report ID": "r"})

    assert rejected.reason == "key 1 is not a string"
    assert rejected.raw == b'{"1":"a","Report ID":"r"}'
    weird = _rejected({"Report ID": "r", "Duration": object()})
    assert weird.reason.startswith("duration ('Duration'): <object object at")
    assert weird.raw.startswith(b"{'Report ID': 'r', 'Duration': <object object")


# --- timestamps ---------------------------------------------------------------------------------


def test_cdr_timestamp_gives_aware_utc_datetimes() -> None:
    """timestamp() returns a tz-aware UTC datetime, None when absent, and refuses other fields."""
    cdr = _cdr(_record(**{"Start time": "2023-10-12 21:22:32.621"}))

    assert cdr.timestamp("start_time") == datetime(2023, 10, 12, 21, 22, 32, 621000, tzinfo=UTC)
    assert cdr.timestamp("start_time").utcoffset() == timedelta(0)  # type: ignore[union-attr]
    assert cdr.timestamp("answer_time") is None
    with pytest.raises(ValueError, match="not a timestamp field"):
        cdr.timestamp("duration")


def test_format_timestamp_is_canonical_utc() -> None:
    """Offsets convert to UTC, microseconds truncate to milliseconds, years pad to four digits."""
    tz = timezone(timedelta(hours=2))

    assert format_timestamp(datetime(2024, 1, 1, 2, 0, 0, 999999, tzinfo=tz)) == (
        "2024-01-01T00:00:00.999Z"
    )
    assert format_timestamp(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00.000Z"
    with pytest.raises(ValueError, match="naive"):
        format_timestamp(datetime(2024, 1, 1))  # noqa: DTZ001 - the naive case is the point


def test_parse_timestamp_round_trips_and_refuses_junk() -> None:
    """parse_timestamp reads the canonical form back and raises ValueError on anything else."""
    moment = datetime(2026, 9, 24, 7, 49, 10, 939000, tzinfo=UTC)

    assert parse_timestamp(format_timestamp(moment)) == moment
    for junk in ("", "now", "2026-09-24T07:49:60Z", "9999-12-31T23:00:00-05:00"):
        with pytest.raises(ValueError, match="timestamp"):
            parse_timestamp(junk)


# --- pages --------------------------------------------------------------------------------------


def test_a_page_keeps_going_past_bad_items() -> None:
    """Good items become records, bad ones rejections, in order, from one page."""
    body = orjson.dumps({"items": [SAMPLES[2], "junk", {"Duration": 1}, SAMPLES[3]]})

    page = parse_page(body)

    assert isinstance(page, ParsedPage)
    assert [cdr.report_id for cdr in page.records] == [
        SAMPLES[2]["Report ID"],
        SAMPLES[3]["Report ID"],
    ]
    assert [r.raw for r in page.rejected] == [b'"junk"', b'{"Duration":1}']


def test_an_empty_page_has_nothing() -> None:
    """{"items": []} is a page with no records, not an error."""
    assert parse_page(b'{"items": []}') == ParsedPage(records=[], rejected=[])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>busy</html>", "page is not JSON"),
        (b"", "page is not JSON"),
        (b"[]", "no 'items' list"),
        (b'{"message": "x"}', "no 'items' list"),
        (b'{"items": {}}', "no 'items' list"),
    ],
)
def test_a_body_that_is_not_a_page_raises_bad_page(body: bytes, message: str) -> None:
    """A body that is not JSON, or has no items list, raises WebexBadPageError with the body."""
    with pytest.raises(WebexBadPageError, match=message) as info:
        parse_page(body)

    assert info.value.body == body


def test_a_dict_subclass_that_invents_missing_keys_is_read_as_it_is() -> None:
    """A defaultdict is neither changed nor read as having keys it does not have."""
    _cdr(SAMPLES[2])  # leaves a plan for 87-key records behind
    record: defaultdict[str, object] = defaultdict(str, {"Report ID": "r-1", "Duration": 4})
    record.update({f"extra {i}": i for i in range(85)})

    cdr = _cdr(record)

    assert cdr.fields == {"report_id": "r-1", "duration": 4}
    assert len(cdr.unknown) == 85
    assert len(record) == 87
