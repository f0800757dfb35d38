"""Dedup marks: which Report IDs were already published, within a time horizon. Pure.

A mark is a 64-bit hash of the Report ID (BLAKE2b; stable across processes, unlike ``hash()``).
With n live marks a new Report ID is wrongly taken for a duplicate with probability about
n / 2**64 (5e-14 at a million marks). Marks sit in an open-addressing table over two flat arrays
(hash, hour of marking) instead of a Python set: about 24 bytes a mark at the lowest load instead of
the 70+ a set of ints costs, which keeps a 12 h horizon of a busy org in tens of megabytes. Marks
are grouped by the hour they were made so that expiry and the state topic work per hour.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable

_EMPTY = 0
_MIN_CAPACITY = 1 << 10
_MAX_LOAD = 0.6


def mark_of(report_id: str) -> int:
    """The 64-bit mark of a Report ID (never 0: 0 marks an empty slot)."""
    value = int.from_bytes(hashlib.blake2b(report_id.encode(), digest_size=8).digest(), "little")
    return value or 1


def pack_marks(marks: Iterable[int]) -> bytes:
    return array("Q", marks).tobytes()


def unpack_marks(data: bytes) -> array[int]:
    marks = array("Q")
    marks.frombytes(data[: len(data) - len(data) % 8])
    return marks


class MarkTable:
    """A set of marks, each remembered with the hour (since the epoch) it was made."""

    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        size = _MIN_CAPACITY
        while size * _MAX_LOAD < capacity:
            size <<= 1
        self._keys = array("Q", bytes(8 * size))
        self._hours = array("I", bytes(4 * size))
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, mark: int) -> bool:
        keys, mask = self._keys, self._mask
        slot = mark & mask
        while True:
            found = keys[slot]
            if found == mark:
                return True
            if found == _EMPTY:
                return False
            slot = (slot + 1) & mask

    def key_array(self) -> array[int]:
        """The table's slots (0 = empty), for a compiled probe of many marks at once."""
        return self._keys

    def add(self, mark: int, hour: int) -> bool:
        """Remember ``mark``; False when it was already there (its hour is then kept)."""
        if (self._count + 1) > (self._mask + 1) * _MAX_LOAD:
            self._rebuild(self._count * 2 + 1, keep_from_hour=0)
        keys, mask = self._keys, self._mask
        slot = mark & mask
        while True:
            found = keys[slot]
            if found == mark:
                return False
            if found == _EMPTY:
                keys[slot] = mark
                self._hours[slot] = hour
                self._count += 1
                return True
            slot = (slot + 1) & mask

    def add_many(self, marks: Iterable[int], hour: int) -> int:
        """``add`` for each mark; returns how many were new. The table grows once up front and
        the probe loop is inlined: restore feeds a million marks through here."""
        if not isinstance(marks, list | tuple | array):
            marks = list(marks)
        needed = self._count + len(marks)
        if needed > (self._mask + 1) * _MAX_LOAD:
            self._rebuild(max(needed, self._count * 2 + 1), keep_from_hour=0)
        added = self._insert(marks, hour)
        self._count += added
        return added

    def _insert(self, marks: Iterable[int], hour: int) -> int:
        """Put marks made in ``hour`` into a table known to have room; how many were new (the
        caller updates the count). The probe is inlined: restore feeds a million marks here."""
        keys, hours, mask = self._keys, self._hours, self._mask
        added = 0
        for mark in marks:
            slot = mark & mask
            while True:
                found = keys[slot]
                if found == _EMPTY:
                    keys[slot] = mark
                    hours[slot] = hour
                    added += 1
                    break
                if found == mark:
                    break
                slot = (slot + 1) & mask
        return added

    def expire_before(self, hour: int) -> int:
        """Forget marks made before ``hour``; returns how many were forgotten."""
        before = self._count
        self._rebuild(self._count, keep_from_hour=hour)
        return before - self._count

    def hours(self) -> set[int]:
        return {h for k, h in zip(self._keys, self._hours, strict=True) if k != _EMPTY}

    def memory_bytes(self) -> int:
        return self._keys.buffer_info()[1] * 8 + self._hours.buffer_info()[1] * 4

    def _rebuild(self, capacity: int, keep_from_hour: int) -> None:
        old_keys, old_hours = self._keys, self._hours
        self._allocate(capacity)
        keys, hours, mask = self._keys, self._hours, self._mask
        count = 0
        # Inlined probe, and no copy of the kept marks: an hourly expiry of a million marks
        # must not double the table's memory on the way.
        for mark, hour in zip(old_keys, old_hours, strict=True):
            if mark == _EMPTY or hour < keep_from_hour:
                continue
            slot = mark & mask
            while keys[slot] != _EMPTY:  # marks in the old table are distinct
                slot = (slot + 1) & mask
            keys[slot] = mark
            hours[slot] = hour
            count += 1
        self._count = count
