"""The compiled reader (native/, publisher.webex.native) on what a hostile source can send.

Each page is compared with the reference parser (records, rejections, events byte for byte, DLQ
entries, counts: tests.unit.test_fast_page._assert_same), and each test also says which records
the compiled reader must take itself and which it must leave to Python: a record it vouched for
wrongly would be published from bytes it misread, one it refused needlessly would cost speed.
"""

from __future__ import annotations

import gc
from typing import Any

import orjson
import pytest
from cdr_publisher_native import any_marked, mark
from hypothesis import given
from hypothesis import strategies as st

from publisher.batch import Batch, build_batch
from publisher.dedup import MarkTable, mark_of
from publisher.errors import WebexBadPageError
from publisher.events import EventEncoder
from publisher.webex import native
from publisher.webex.page import Rows
from publisher.webex.record import ParsedPage, parse_page, parse_page_reference
from tests.unit.test_fast_page import BASE, SOURCE, TOPICS, _assert_same, _batch, _valid


def test_the_extension_is_built() -> None:
    """CI must exercise the compiled reader, not silently fall back to the msgspec path."""
    assert native.AVAILABLE, "cdr_publisher_native is not installed: run make venv"


def _split(body: bytes) -> tuple[list[bool], int] | None:
    """(per record, whether the compiled reader took it; how many it left), or None when it
    refused the page whole."""
    found = native.parse(body, native.SPEC)
    if found is None:
        return None
    items, fallbacks = found
    return [item is not None for item in items], len(fallbacks)


def _page(records: list[Any]) -> bytes:
    return orjson.dumps({"items": records})


def _records(count: int = 6) -> list[dict[str, Any]]:
    return [dict(r) for r in BASE[:count]]


@given(st.text())
def test_marks_are_the_python_marks(report_id: str) -> None:
    assert mark(report_id) == mark_of(report_id)


def test_a_plain_page_is_read_natively_and_is_the_reference() -> None:
    body = _page(_records(40))

    assert _split(body) == ([True] * 40, 0)
    page = parse_page(body)
    assert isinstance(page.records, Rows)
    assert all(item.__class__ is native.Row for item in page.records.items)
    _valid(_assert_same(body))


# (what, change to record 2): each record so changed is left to Python; the rest stay native.
LEFT_TO_PYTHON: list[tuple[str, Any]] = [
    ("escaped string", {"Location": 'a "quoted" name'}),
    ("escaped solidus-free unicode", {"Location": "caf\u00e9\n"}),
    ("key never seen", {"Key no test uses elsewhere": 1}),
    ("number for a string", {"Location": 12}),
    ("boolean for a string", {"Location": True}),
    ("object for a string", {"Location": {"a": [1, {"b": None}]}}),
    ("negative integer", {"Duration": -1}),
    ("negative zero", {"Duration": -0.0}),
    ("float integer", {"Duration": 12.0}),
    ("integer past int64", {"Duration": 2**63}),
    ("digit string past int64", {"Duration": str(2**63)}),
    ("padded digit string", {"Duration": " 8 "}),
    ("signed digit string", {"Duration": "+8"}),
    ("boolean in capitals", {"Answered": "TRUE"}),
    ("integer for a boolean", {"Answered": 1}),
    ("timestamp with a space", {"Start time": "2023-10-12 21:22:32.621"}),
    ("timestamp with an offset", {"Start time": "2023-10-12T21:22:32.621+02:00"}),
    ("30 February", {"Start time": "2023-02-30T21:22:32.621Z"}),
    ("29 February of a common year", {"Start time": "2023-02-29T21:22:32.621Z"}),
    ("hour 24", {"Start time": "2023-10-12T24:00:00.000Z"}),
    ("second 60", {"Start time": "2023-10-12T23:59:60.000Z"}),
    ("year 0", {"Start time": "0000-10-12T21:22:32.621Z"}),
    ("absent Report ID", {"Report ID": "NA"}),
    ("blank Report ID", {"Report ID": " \u3000 "}),
    ("null Report ID", {"Report ID": None}),
    ("numeric Report ID", {"Report ID": 7}),
]


@pytest.mark.parametrize(("what", "change"), LEFT_TO_PYTHON, ids=[w for w, _c in LEFT_TO_PYTHON])
def test_a_record_it_cannot_vouch_for_is_left_to_python_alone(what: str, change: Any) -> None:
    records = _records()
    records[2].update(change)
    body = _page(records)

    split = _split(body)

    assert split == ([True, True, False, True, True, True], 1), what
    _assert_same(body)


# (what, change to record 2): values the compiled reader takes as they are, or converts itself.
READ_NATIVELY: list[tuple[str, Any]] = [
    ("non-ASCII text", {"Location": "Z\u00fcrich \u2013 \u6771\u4eac \U0001f680"}),
    ("absent spellings", {"Location": "", "Department ID": "NA", "Site UUID": "na"}),
    ("null values", {"Location": None, "Duration": None, "Answered": None, "Start time": None}),
    ("NA where NA is a value", {"WxCC consult merge status": "NA"}),
    ("digit string", {"Duration": "0012"}),
    ("largest integer", {"Duration": 2**63 - 1, "Ring duration": str(2**63 - 1)}),
    ("boolean strings", {"Answered": "false", "Call Recording Result": "x"}),
    ("JSON booleans", {"Answered": True}),
    ("29 February of a leap year", {"Start time": "2024-02-29T21:22:32.621Z"}),
    ("last instant", {"Start time": "9999-12-31T23:59:59.999Z"}),
    ("new enum value", {"Call type": "SIP_NEVER_SEEN", "Client type": "NEW_CLIENT"}),
    ("absent Correlation ID", {"Correlation ID": "NA"}),
    ("a known field missing", None),
]


@pytest.mark.parametrize(("what", "change"), READ_NATIVELY, ids=[w for w, _c in READ_NATIVELY])
def test_values_of_their_kind_are_read_natively(what: str, change: Any) -> None:
    records = _records()
    if change is None:
        del records[2]["Location"]
    else:
        records[2].update(change)
    body = _page(records)

    assert _split(body) == ([True] * 6, 0), what
    _valid(_assert_same(body))


def test_new_enum_values_are_counted_as_the_reference_counts_them() -> None:
    records = _records()
    records[1]["Call type"] = "SIP_NEVER_SEEN"
    records[4]["Call type"] = "SIP_NEVER_SEEN"

    batch = _assert_same(_page(records))

    assert batch.new_enum_values["call_type"] == 2


def test_white_space_anywhere_json_allows_it_changes_nothing() -> None:
    body = orjson.dumps({"items": _records()}, option=orjson.OPT_INDENT_2).replace(
        b"\n", b"\r\n\t "
    )

    assert _split(body) == ([True] * 6, 0)
    _assert_same(body)


def test_items_that_are_not_objects_are_left_to_python() -> None:
    records: list[Any] = _records(3)
    body = _page([records[0], [], "text", 5, None, {}, records[1], {"a": {"b": [1]}}, records[2]])

    assert _split(body) == ([True, False, False, False, False, False, True, False, True], 6)
    _assert_same(body)


def test_other_top_level_keys_are_skipped() -> None:
    body = orjson.dumps({"meta": {"next": [1, "x", None]}, "items": _records(3), "n": 3})

    assert _split(body) == ([True] * 3, 0)
    _assert_same(body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"items": [' + _page(_records(2))[10:-2] + b"]", id="cut short"),
        pytest.param(b'{"items": [{"Report ID": "a\x01b"}]}', id="raw control character"),
        pytest.param(b'{"items": [{"Report ID": "\xff"}]}', id="not UTF-8"),
        pytest.param(b'{"items": [{"Report ID": "\\ud83d\\ude80"}]}', id="surrogate pair"),
        pytest.param(b'{"items": [{"Report ID": "\\ud800"}]}', id="lone surrogate"),
        pytest.param(b'{"items": [{"Report ID": "\\q"}]}', id="bad escape"),
        pytest.param(b'{"items": [], "items": [{"Report ID": "x"}]}', id="items twice"),
        pytest.param(b'{"items": [{"Duration": 1.}]}', id="bad number"),
        pytest.param(b'{"items": [{"Duration": 01}]}', id="leading zero"),
        pytest.param(b'{"items": [tru]}', id="bad literal"),
        pytest.param(b'{"items": [{"a": ' + b"[" * 200 + b"]" * 200 + b"}]}", id="deep"),
        pytest.param(b'{"items": []} x', id="trailing bytes"),
        pytest.param(b'{"records": []}', id="no items"),
        pytest.param(b"[]", id="not an object"),
        pytest.param(b'{"items": [{"Report ID": "x",}]}', id="trailing comma"),
    ],
)
def test_a_page_it_cannot_read_whole_goes_to_python_whole(body: bytes) -> None:
    """Not JSON, not UTF-8, or a question of JSON that Python's parsers answer (surrogates,
    which of two ``items`` counts): refused whole, and the page reads as the reference (or as
    the salvage of a page that is not JSON) reads it."""
    assert _split(body) is None
    try:
        fast = parse_page(body)
    except WebexBadPageError:
        return  # no items array at all: the daemon's refused-page path
    assert isinstance(fast.records, Rows)
    assert not any(item.__class__ is native.Row for item in fast.records.items)


def test_a_spelling_python_reads_is_learnt_for_the_next_page() -> None:
    """Records with a key spelled as no table entry spells it (case, spaces) go to Python
    once; the spelling is learnt, and the next such page is read natively."""
    records = [
        {("cALL   typE" if k == "Call type" else k): v for k, v in r.items()} for r in _records()
    ]
    body = _page(records)
    first = _split(body)
    assert first is not None
    assert first[1] in (0, 6)  # 0 when an earlier test taught it already

    _assert_same(body)

    assert _split(body) == ([True] * 6, 0)


def test_unknown_keys_python_has_seen_are_read_natively_with_simple_values() -> None:
    """An unknown key goes to Python the first time; once it is known to be no field's, records
    with it are read natively when its value is one orjson writes back as it came (the event's
    unknown_fields are then the same bytes), and by Python otherwise."""
    records = _records(8)
    for record in records:
        record["Unknown since today"] = "x"
    body = _page(records)
    first = _split(body)
    assert first is not None
    assert first[1] in (0, 8)  # 0 when an earlier test taught it already
    _assert_same(body)  # Python reads them and teaches the key

    values: list[Any] = ["text", 7, 2**63 - 1, True, False, None, "", "NA"]
    for record, value in zip(records, values, strict=True):
        record["Unknown since today"] = value
    body = _page(records)
    assert _split(body) == ([True] * 8, 0)
    batch = _assert_same(body)
    assert batch.unknown_keys == 8

    odd: list[Any] = [1.5, -1, 2**63, 'a"b', {"n": 1}, [1], "caf\u00e9\n", 1e30]
    for record, value in zip(records, odd, strict=True):
        record["Unknown since today"] = value
    body = _page(records)
    assert _split(body) == ([False] * 8, 8)
    _assert_same(body)


def test_an_unknown_key_twice_in_one_record_is_left_to_python() -> None:
    native.learn_unknown("Twice")
    records = _records(3)
    body = _page(records).replace(b'"Report ID"', b'"Twice":1,"Twice":2,"Report ID"', 1)

    assert _split(body) == ([False, True, True], 1)
    _assert_same(body)


def test_a_page_mostly_left_to_python_is_read_whole_by_the_msgspec_path() -> None:
    records = _records(6)
    for record in records[:4]:
        record["Duration"] = " 3 "
    body = _page(records)

    assert _split(body) == ([False, False, False, False, True, True], 4)
    _assert_same(body)


def test_a_duplicate_field_under_two_spellings_is_left_to_python() -> None:
    records = _records()
    records[3]["call type"] = "SIP_ENTERPRISE"  # "Call type" is there too
    native.learn("call type", "call_type")
    body = _page(records)

    assert _split(body) == ([True, True, True, False, True, True], 1)
    _assert_same(body)


def test_the_framer_writes_what_the_msgspec_encoder_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Org and replay ids with quotes, controls and NULs: the envelope around the compiled rows
    is cut from the encoder's own output, so it stays the same bytes."""
    body = _page(_records(5))
    org, replay = 'org "x"\x00\n\\', "replay\x00"
    natively = _batch(parse_page(body), org_id=org, replay_id=replay)
    monkeypatch.setattr(native, "AVAILABLE", False)
    by_msgspec = _batch(parse_page(body), org_id=org, replay_id=replay)

    assert natively.events == by_msgspec.events
    assert len(natively.events.values) == 5


@given(st.lists(st.integers(min_value=1, max_value=2**64 - 1), max_size=300), st.data())
def test_the_compiled_probe_finds_what_the_mark_table_holds(
    held: list[int], data: st.DataObject
) -> None:
    table = MarkTable()
    table.add_many(held, hour=1)
    asked = data.draw(st.lists(st.integers(min_value=1, max_value=2**64 - 1), max_size=20))
    if held and data.draw(st.booleans()):
        asked.append(data.draw(st.sampled_from(held)))

    assert any_marked(table.key_array(), asked) == any(mark in table for mark in asked)


def test_records_committed_before_are_dropped_on_the_compiled_path_too() -> None:
    """A page of compiled rows of which some were committed by an earlier page (and one is
    twice in the page): the events are the reference's, duplicates counted alike."""
    records = _records(10)
    records.append(records[3])
    body = _page(records)
    committed = MarkTable()
    committed.add_many([mark_of(str(r["Report ID"])) for r in records[5:7]], hour=1)

    def batch(page: ParsedPage) -> Batch:
        return build_batch(
            page, committed=committed, encoder=EventEncoder(9), topics=TOPICS, org_id="o",
            source=SOURCE,
        )  # fmt: skip

    fast, reference = batch(parse_page(body)), batch(parse_page_reference(body))

    assert _split(body) == ([True] * 11, 0)
    assert fast.events == reference.events
    assert fast.marks == reference.marks
    assert (
        (fast.published, fast.duplicates)
        == (reference.published, reference.duplicates)
        == (
            8,
            3,
        )
    )


def test_teaching_a_key_during_a_parse_loses_nothing() -> None:
    """The key table is borrowed while a parse reads it; a finalizer the garbage collector runs
    during that parse (or another thread it lets in) may teach a key then. The lesson is skipped
    instead of raising out of the msgspec path, and the key is taught by its next record."""
    spelling = "CaLL    TyPe"  # the reference reads it as Call type; no other test teaches it
    escaped: list[BaseException] = []

    class TeachesWhenCollected:
        def __init__(self) -> None:
            self.cycle = self  # only the collector frees it, at an allocation inside parse

        def __del__(self) -> None:
            try:
                native.learn(spelling, "call_type")
            except BaseException as error:  # noqa: BLE001 - what escapes is the finding
                escaped.append(error)

    body = _page(_records(20))
    threshold = gc.get_threshold()
    gc.collect()
    TeachesWhenCollected()
    gc.set_threshold(1)
    try:
        during = _split(body)
    finally:
        gc.set_threshold(*threshold)
    gc.collect()

    assert escaped == []
    assert during == ([True] * 20, 0)
    records = [
        {(spelling if k == "Call type" else k): v for k, v in r.items()} for r in _records(3)
    ]
    assert _split(_page(records)) == ([False] * 3, 3)  # the lesson was skipped, not half-learnt
    native.learn(spelling, "call_type")
    assert _split(_page(records)) == ([True] * 3, 0)
    _assert_same(_page(records))
