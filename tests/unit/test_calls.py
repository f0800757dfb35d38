"""Call assembly: legs grouped by Correlation ID, emitted after a quiet period on report time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from publisher.calls import CallAssembler, assemble_calls
from publisher.consumer.model import CdrEvent

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
QUIET = timedelta(minutes=15)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def leg(
    report_id: str,
    correlation_id: str | None,
    minute: float,
    *,
    answered: bool = False,
    direction: str = "ORIGINATING",
    duration_s: int = 60,
) -> CdrEvent:
    """A leg that starts at T0 + ``minute`` and is reported when it ends."""
    start = T0 + timedelta(minutes=minute)
    end = start + timedelta(seconds=duration_s)
    body: dict[str, Any] = {
        "event_id": report_id,
        "event_type": "webex.calling.cdr",
        "schema_version": 1,
        "org_id": "org",
        "correlation_id": correlation_id,
        "report_time": _iso(end),
        "source": {"endpoint": "stream", "window_start": _iso(T0), "window_end": _iso(T0)},
        "replay_id": None,
        "cdr": {
            "report_id": report_id,
            "correlation_id": correlation_id,
            "start_time": _iso(start),
            "release_time": _iso(end),
            "answered": answered,
            "direction": direction,
        },
        "unknown_fields": {},
    }
    return CdrEvent.model_validate(body)


def test_legs_out_of_order_make_one_call_with_legs_in_start_order() -> None:
    """Legs of a call arriving in any order are emitted once, together, ordered by start time,
    with start, end, answered and the first leg's direction."""
    events = [
        leg("b", "call-1", 2, answered=True, direction="TERMINATING"),
        leg("c", "call-1", 5, duration_s=120, direction="TERMINATING"),
        leg("a", "call-1", 0, direction="ORIGINATING"),
        leg("x", "other", 40),  # moves the watermark past call-1's quiet period
    ]

    calls = list(assemble_calls(events, quiet=QUIET, flush_at_end=False))

    assert len(calls) == 1
    call = calls[0]
    assert call.report_ids == ["a", "b", "c"]
    assert call.start == T0
    assert call.end == T0 + timedelta(minutes=5, seconds=120)
    assert call.answered is True
    assert call.direction == "ORIGINATING"
    assert call.revision == 1
    assert call.closed_by == "quiet"
    assert call.summary()["report_ids"] == ["a", "b", "c"]
    assert call.summary()["start"] == "2026-03-01T12:00:00.000Z"


def test_a_call_stays_open_until_the_watermark_passes_its_quiet_period() -> None:
    """Nothing is emitted while report time has not moved `quiet` past the newest leg; the wall
    clock plays no part."""
    assembler = CallAssembler(quiet=QUIET)

    assert assembler.add(leg("a", "c1", 0)) == []
    assert assembler.add(leg("x", "c2", 14)) == []  # 13 min after c1's leg ended: still quiet
    emitted = assembler.add(leg("y", "c3", 16.5))

    assert [c.correlation_id for c in emitted] == ["c1"]
    assert assembler.open_calls == 2


def test_a_late_leg_is_emitted_as_an_update_with_every_leg() -> None:
    """A leg that arrives after its call was emitted re-opens it; the call comes again with all
    legs and revision 2."""
    events = [
        leg("a", "call-1", 0),
        leg("b", "call-1", 1),
        leg("x", "other", 30),
        leg("late", "call-1", 3, answered=True),  # reported long after the call was emitted
        leg("y", "other-2", 60),
    ]

    calls = [c for c in assemble_calls(events, quiet=QUIET) if c.correlation_id == "call-1"]

    assert [(c.revision, c.report_ids) for c in calls] == [(1, ["a", "b"]), (2, ["a", "b", "late"])]
    assert calls[1].summary()["update"] is True
    assert calls[1].answered is True


def test_a_redelivered_leg_changes_nothing() -> None:
    """At-least-once delivery may hand a leg over twice: no second leg, no spurious update."""
    events = [leg("a", "c1", 0), leg("a", "c1", 0), leg("x", "c2", 30), leg("a", "c1", 0)]

    calls = [c for c in assemble_calls(events, quiet=QUIET) if c.correlation_id == "c1"]

    assert [(c.revision, c.report_ids) for c in calls] == [(1, ["a"])]


def test_legs_without_correlation_id_are_each_a_call_of_their_own() -> None:
    """No Correlation ID: nothing to join, so each such leg is emitted at once, alone."""
    assembler = CallAssembler(quiet=QUIET)

    first = assembler.add(leg("a", None, 0))
    second = assembler.add(leg("b", "", 0))

    assert [(c.correlation_id, c.report_ids, c.closed_by) for c in first + second] == [
        (None, ["a"], "no-correlation-id"),
        (None, ["b"], "no-correlation-id"),
    ]
    assert assembler.open_calls == 0


def test_memory_is_bounded_and_every_call_is_still_emitted_once() -> None:
    """With 10,000 calls open at once (report time never advances) and room for 100, the oldest
    open call is emitted early each time; open and remembered calls never exceed their bounds."""
    assembler = CallAssembler(quiet=QUIET, max_open_calls=100, max_remembered_calls=50)
    emitted = []
    for i in range(10_000):
        emitted += assembler.add(leg(f"r{i}", f"c{i}", 0))
        assert assembler.open_calls <= 100
        assert assembler.remembered_calls <= 50
    emitted += assembler.flush()

    assert sorted(c.correlation_id or "" for c in emitted) == sorted(f"c{i}" for i in range(10_000))
    assert sum(1 for c in emitted if c.closed_by == "memory") == 10_000 - 100
    assert emitted[0].correlation_id == "c0"  # the oldest goes first


def test_a_late_leg_of_a_forgotten_call_starts_a_new_call() -> None:
    """Once a call has left the remembered set, its late leg is a call of its own (revision 1),
    as the eviction rule documents."""
    assembler = CallAssembler(quiet=QUIET, max_remembered_calls=1)
    out = assembler.add(leg("a", "c1", 0))
    out += assembler.add(leg("b", "c2", 20))  # c1 emitted and remembered
    out += assembler.add(leg("c", "c3", 40))  # c2 emitted; c1 forgotten
    out += assembler.add(leg("late", "c1", 1))
    out += assembler.flush()

    c1 = [(c.revision, c.report_ids) for c in out if c.correlation_id == "c1"]
    assert c1 == [(1, ["a"]), (1, ["late"])]


def test_watermarks_are_per_partition() -> None:
    """A partition read ahead of another does not make the other's legs late: each call waits
    on its own partition's report time."""
    assembler = CallAssembler(quiet=QUIET)
    out = assembler.add(leg("a", "c1", 0), lane=0)
    out += assembler.add(leg("z", "c9", 180), lane=1)  # partition 1 is hours ahead
    out += assembler.add(leg("b", "c1", 2), lane=0)

    assert out == []
    out += assembler.add(leg("c", "c2", 30), lane=0)
    assert [(c.correlation_id, c.report_ids) for c in out] == [("c1", ["a", "b"])]


def test_bounds_must_be_positive() -> None:
    """An assembler that could hold no open call is a configuration error."""
    with pytest.raises(ValueError, match="max_open_calls"):
        CallAssembler(max_open_calls=0)
