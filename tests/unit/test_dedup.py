"""Dedup marks: membership, growth, expiry by hour, packing for the state topic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from publisher.dedup import MarkTable, mark_of, pack_marks, unpack_marks


def test_mark_is_stable_and_never_zero() -> None:
    """The same Report ID gives the same mark in every process (no hash randomisation)."""
    assert mark_of("0a0c2eb7-f1f6-3326-86f9-565d2e11553d") == mark_of(
        "0a0c2eb7-f1f6-3326-86f9-565d2e11553d"
    )
    assert mark_of("a") != mark_of("b")
    assert all(mark_of(str(i)) != 0 for i in range(1000))


@given(st.lists(st.integers(min_value=1, max_value=2**64 - 1), max_size=3000))
def test_table_behaves_like_a_set(marks: list[int]) -> None:
    """Whatever is added is found, nothing else is, and duplicates are reported as such."""
    table = MarkTable()
    seen: set[int] = set()
    for mark in marks:
        assert table.add(mark, hour=1) == (mark not in seen)
        seen.add(mark)

    assert len(table) == len(seen)
    assert all(mark in table for mark in seen)
    assert (2**64 - 1 in table) == (2**64 - 1 in seen)


def test_expiry_forgets_only_older_hours() -> None:
    """expire_before(h) drops marks made before hour h and keeps the rest."""
    table = MarkTable()
    for i in range(1, 5001):
        table.add(i, hour=100 + i % 3)

    dropped = table.expire_before(102)

    assert dropped == sum(1 for i in range(1, 5001) if 100 + i % 3 < 102)
    assert table.hours() == {102}
    assert all((i in table) == (100 + i % 3 >= 102) for i in range(1, 5001))


def test_memory_per_mark_stays_small() -> None:
    """A million-mark table holds well under 64 bytes a mark (flat arrays, not a set)."""
    table = MarkTable()
    for i in range(1, 200_001):
        table.add(mark_of(str(i)), hour=1)

    assert table.memory_bytes() / len(table) <= 48


def test_marks_round_trip_through_bytes() -> None:
    """Packed marks (8 bytes each) unpack to the same values."""
    marks = [mark_of(str(i)) for i in range(100)]

    assert list(unpack_marks(pack_marks(marks))) == marks
