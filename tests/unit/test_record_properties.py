"""Properties of the record parser: whatever JSON arrives, it answers and never raises."""

from __future__ import annotations

import re
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.errors import WebexBadPageError
from publisher.webex.fields import FIELDS, FIELDS_BY_KEY, NA_IS_A_VALUE, Kind, normalise_key
from publisher.webex.record import Cdr, ParsedPage, RejectedRecord, parse_page, parse_record

CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
TIMESTAMP_FIELDS = frozenset(f.name for f in FIELDS if f.kind is Kind.TIMESTAMP)
INTEGER_FIELDS = frozenset(f.name for f in FIELDS if f.kind is Kind.INTEGER)
STRING_FIELDS = frozenset(f.name for f in FIELDS if f.kind in (Kind.STRING, Kind.OPEN_ENUM))

# What orjson can give back: 64-bit integers, finite floats, strings without lone surrogates.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

# Keys the parser knows, in the spellings and near-spellings it must match.
raw_keys = st.sampled_from([k for f in FIELDS for k in (f.raw_key, *f.spellings)]).flatmap(
    lambda key: st.sampled_from(
        [key, key.upper(), key.lower(), f"  {key} ", key.replace(" ", "  ")]
    )
)
# Values that look like what Webex sends, plus anything at all.
plausible_values = (
    st.sampled_from(["", "NA", "na", "true", "false", "0", " 8 ", "12.0", "-1", "abc"])
    | st.sampled_from(["2026-09-24T07:49:10.939Z", "2023-10-12 21:22:32.621", "2023-02-30T00:00Z"])
    | st.builds(
        lambda d, sep, spec: d.isoformat(sep=sep, timespec=spec),
        st.datetimes(timezones=st.none() | st.timezones()),
        st.sampled_from("T "),
        st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]),
    )
    | json_values
)
records_of_known_keys = st.dictionaries(
    raw_keys | st.text(max_size=20), plausible_values, max_size=30
).map(lambda d: {"Report ID": "r-1", **d} if len(d) % 3 else d)


def _check(result: Cdr | RejectedRecord) -> None:
    if isinstance(result, RejectedRecord):
        assert result.reason
        assert "\n" not in result.reason
        assert not result.reason.startswith("parser error"), result.reason
        assert isinstance(result.raw, bytes)
        return
    assert isinstance(result, Cdr)
    assert result.report_id
    assert result.fields["report_id"] == result.report_id
    for name, value in result.fields.items():
        if name in TIMESTAMP_FIELDS:
            assert isinstance(value, str)
            assert CANONICAL.fullmatch(value), value
        elif name in INTEGER_FIELDS:
            assert type(value) is int
            assert 0 <= value < 2**63
        elif name in STRING_FIELDS:
            assert isinstance(value, str)
            assert value != ""
    # The event builder serialises the result with orjson: it must be able to.
    orjson.dumps({"fields": result.fields, "unknown": result.unknown})


@given(json_values)
def test_any_json_value_gives_a_cdr_or_a_reason(value: Any) -> None:
    """Any JSON value at all: a Cdr or a RejectedRecord with a non-empty one-line reason."""
    result = parse_record(value)

    _check(result)
    if isinstance(result, RejectedRecord):
        assert result.raw == orjson.dumps(value)


@settings(max_examples=300)
@given(records_of_known_keys)
def test_objects_of_known_keys_with_any_values_give_a_cdr_or_a_reason(record: Any) -> None:
    """Known keys (any case and spacing) with any values: typed fields, canonical timestamps."""
    result = parse_record(record)

    _check(result)
    if isinstance(result, Cdr):
        # Nothing dropped: every raw key is a field, absent by rule, or in unknown as it came.
        for key, value in record.items():
            if key in result.unknown:
                assert result.unknown[key] is value
                continue
            field = FIELDS_BY_KEY[normalise_key(key)]
            na_is_value = field.name in NA_IS_A_VALUE
            if value is None or value == "" or (value in ("NA", "na") and not na_is_value):
                assert field.name not in result.fields
            else:
                assert field.name in result.fields


@given(
    st.binary()
    | json_values.map(orjson.dumps)
    | st.lists(json_values).map(lambda items: orjson.dumps({"items": items}))
)
def test_parse_page_returns_a_page_or_raises_bad_page(body: bytes) -> None:
    """Arbitrary bytes: a ParsedPage, or WebexBadPageError carrying the body; nothing else."""
    outcome = _parse_page_or_error(body)

    if isinstance(outcome, WebexBadPageError):
        assert outcome.body == body
        return
    assert isinstance(outcome, ParsedPage)
    for record in outcome.records:
        _check(record)
    for rejected in outcome.rejected:
        _check(rejected)


def _parse_page_or_error(body: bytes) -> ParsedPage | WebexBadPageError:
    try:
        return parse_page(body)
    except WebexBadPageError as exc:
        return exc
