"""What the jobs of one org share in memory: dedup marks, the keys behind them, and one lock. Pure.

Every job of an org (the live stream, gap fills, replays) checks its records against the same
table and adds to it only after its transaction committed, all under :attr:`OrgState.lock`, so
that no two jobs of a process can both publish one Report ID: check, commit and remember are one
step (see :mod:`publisher.task`). A republish is the exception: it publishes again on purpose, so
its marks only guard its own resumption and live in a table of their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from publisher.dedup import MarkTable, pack_marks
from publisher.state.codec import Cursor, OrgRecords, dedup_key, shares_marks


@dataclass
class _Marks:
    table: MarkTable = field(default_factory=MarkTable)
    keys_by_hour: dict[int, list[bytes]] = field(default_factory=dict)


@dataclass(frozen=True)
class StateWrite:
    """The state records one commit writes, and what memory does once it is committed."""

    records: list[tuple[bytes, bytes | None]]
    job: str
    hour: int
    marks: list[int]
    mark_key: bytes | None
    expired_hours: list[int]
    oldest_hour: int
    migrates: bool


class OrgState:
    """One org's dedup state and positions as committed, for every job of this process.

    ``lock`` is shared by every org of one state partition (a slot: one producer, one
    transaction at a time); ``partition`` is where the org's state records go (None: wherever
    the key hashes, for a state topic of one partition read whole)."""

    def __init__(
        self,
        deployment: str,
        org: str,
        *,
        lock: threading.RLock | None = None,
        partition: int | None = None,
    ) -> None:
        self.deployment = deployment
        self.org = org
        self.lock = lock or threading.RLock()
        self.partition = partition
        self.generation = 0
        """Counts loads: a task whose position predates the last restore reloads it."""
        self._shared = _Marks()
        self._private: dict[str, _Marks] = {}
        self.cursors: dict[str, Cursor] = {}
        self.replays: dict[str, dict[str, Any]] = {}
        self.status: dict[str, Any] | None = None
        self.requests: dict[str, dict[str, Any]] = {}
        self._legacy_keys: list[bytes] = []
        self._migrated: dict[bytes, bytes] = {}
        self.records_read = 0

    def restore(self, read: Callable[[], OrgRecords], *, oldest_hour: int) -> None:
        """Replace memory with what ``read()`` finds in the state topic (see :func:`restore`)."""
        restore([self], lambda: {self.org: read()}, oldest_hour=oldest_hour)

    def load(self, records: OrgRecords, *, oldest_hour: int) -> None:
        """Replace memory with ``records`` (see :meth:`restore`)."""
        with self.lock:
            shared_total = sum(len(m.marks) for m in records.marks if shares_marks(m.job))
            self._shared = _Marks(MarkTable(shared_total))
            self._private = {}
            for record in records.marks:
                marks = self._marks_of(record.job)
                # Expired but not yet tombstoned: the key is kept so the next commit deletes it.
                marks.keys_by_hour.setdefault(record.hour, []).append(record.key)
                if record.hour >= oldest_hour or not shares_marks(record.job):
                    marks.table.add_many(record.marks, record.hour)
            self.cursors = dict(records.cursors)
            self.replays = dict(records.replays)
            self.status = records.status
            self.requests = dict(records.requests)
            self._legacy_keys = list(records.legacy_keys)
            self._migrated = dict(records.migrated)
            self.records_read = records.records_read
            self.generation += 1

    def _marks_of(self, job: str) -> _Marks:
        if shares_marks(job):
            return self._shared
        return self._private.setdefault(job, _Marks())

    def table(self, job: str) -> MarkTable:
        """The table ``job`` checks its records against (the org's, or a republish's own)."""
        return self._marks_of(job).table

    @property
    def mark_count(self) -> int:
        return len(self._shared.table)

    def plan_write(
        self, job: str, marks: list[int], *, hour: int, seq: int, oldest_hour: int
    ) -> StateWrite:
        """Step 1 of a commit: this batch's marks, tombstones for the org's expired marks and
        (once) for keys of the old layout. Changes nothing until :meth:`committed`."""
        records: list[tuple[bytes, bytes | None]] = []
        expired = [h for h in self._shared.keys_by_hour if h < oldest_hour]
        records.extend((key, None) for h in expired for key in self._shared.keys_by_hour[h])
        migrates = bool(self._legacy_keys or self._migrated)
        records.extend((key, None) for key in self._legacy_keys)
        records.extend(self._migrated.items())
        mark_key = None
        if marks:
            mark_key = dedup_key(self.deployment, self.org, job, hour, seq)
            records.append((mark_key, pack_marks(marks)))
        return StateWrite(records, job, hour, marks, mark_key, expired, oldest_hour, migrates)

    def committed(self, write: StateWrite) -> None:
        """Step 3 of a commit: memory follows what is now committed."""
        for h in write.expired_hours:
            del self._shared.keys_by_hour[h]
        if write.expired_hours:
            self._shared.table.expire_before(write.oldest_hour)
        if write.migrates:
            self._legacy_keys = []
            self._migrated = {}
        if write.mark_key is not None:
            target = self._marks_of(write.job)
            target.table.add_many(write.marks, write.hour)
            target.keys_by_hour.setdefault(write.hour, []).append(write.mark_key)

    def private_keys(self, job: str) -> list[bytes]:
        """The keys of a republish's own marks (to delete when it is done)."""
        private = self._private.get(job)
        if private is None:
            return []
        return [key for keys in private.keys_by_hour.values() for key in keys]

    def drop_private(self, job: str) -> None:
        """Forget a republish's own marks (once their tombstones are committed)."""
        self._private.pop(job, None)


def restore(
    states: list[OrgState], read: Callable[[], dict[str, OrgRecords]], *, oldest_hour: int
) -> None:
    """Replace the memory of ``states`` (orgs of one slot, sharing one lock) with what ``read()``
    finds in the state topic. The lock is held while reading too: a commit of another job
    landing between the read and the load would otherwise be forgotten (its marks dropped), and
    its records published again."""
    if not states:
        return
    lock = states[0].lock
    if any(state.lock is not lock for state in states):
        raise ValueError("orgs restored together must share their slot's lock")
    with lock:
        found = read()
        for state in states:
            state.load(found.get(state.org) or OrgRecords(), oldest_hour=oldest_hour)
