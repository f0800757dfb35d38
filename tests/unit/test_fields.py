"""publisher/webex/fields.py must say exactly what tests/data/cdr-fields.csv says."""

from __future__ import annotations

import csv
from pathlib import Path

from publisher.webex.fields import FIELDS, FIELDS_BY_KEY, FIELDS_BY_NAME, Kind, normalise_key

CSV_PATH = Path(__file__).parents[1] / "data" / "cdr-fields.csv"


def _csv_rows() -> list[dict[str, str]]:
    with CSV_PATH.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_table_lists_the_csv_rows_in_order() -> None:
    """Raw keys, field names, kinds and other spellings equal the CSV's, row by row."""
    expected = [
        (
            row["raw_key"],
            row["field_name"],
            row["type"],
            tuple(s for s in row["other_spellings_seen"].split(";") if s),
        )
        for row in _csv_rows()
    ]
    actual = [(f.raw_key, f.name, f.kind.value, f.spellings) for f in FIELDS]

    assert actual == expected


def test_there_are_87_distinct_keys_and_names() -> None:
    """No two fields share a normalised key or a field name."""
    assert len(FIELDS) == 87
    assert len(FIELDS_BY_KEY) == 87
    assert len(FIELDS_BY_NAME) == 87


def test_every_spelling_normalises_to_its_field() -> None:
    """Each documented and seen spelling finds its own field through normalise_key."""
    for field in FIELDS:
        for spelling in (field.raw_key, *field.spellings):
            assert FIELDS_BY_KEY[normalise_key(spelling)] is field


def test_kinds_in_the_csv_are_all_known() -> None:
    """The CSV uses only kinds the code knows, so a new kind cannot slip in unread."""
    assert {row["type"] for row in _csv_rows()} <= {kind.value for kind in Kind}
