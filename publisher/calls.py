"""Call assembly: legs of one call (one Correlation ID) grouped into a call. Pure: no I/O, no clock.

Legs of a call reach Kafka minutes to hours apart, so a call is emitted once no leg of it has
arrived for a *quiet period measured on report time*, not on the wall clock:

- **Watermark.** Each lane (a Kafka partition: every leg of a call has the same key, hence the
  same partition) has a watermark, the newest leg time seen in it. A leg's time is its
  ``report_time``, else its ``cdr.release_time``, else its ``cdr.start_time``. A call is emitted
  when its lane's watermark has passed its newest leg's time by ``quiet``. Replaying a day of
  history therefore groups it exactly as it was live, in seconds, and a lane with no new events
  keeps its calls open (``flush`` emits them, e.g. when a reader stops).
- **Late legs.** A leg whose call was already emitted re-opens it: the call is emitted again, all
  legs included, with ``revision`` one higher (an update: keep the highest revision per
  Correlation ID), once the watermark has passed its newest leg by ``quiet`` again (at once when
  the leg is that late). A leg already in its call (a re-delivered event) changes nothing.
- **No Correlation ID.** Such a leg cannot be joined to anything: it is emitted at once as a call
  of its own.
- **Bounded memory, the eviction rule.** At most ``max_open_calls`` calls are open: when one more
  opens, the open call whose newest leg is oldest is emitted at once (``closed_by="memory"``), as
  if its quiet period had passed. Emitted calls are remembered, for late legs, up to
  ``max_remembered_calls``, oldest emitted forgotten first. A late leg of a forgotten call starts
  a new call (revision 1) holding only the legs that came after; downstream that keeps the
  newest call per Correlation ID should then merge rather than replace. Memory is therefore
  bounded by (``max_open_calls`` + ``max_remembered_calls``) x legs per call.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from publisher.consumer.model import CdrEvent

DEFAULT_QUIET = timedelta(minutes=15)
DEFAULT_MAX_OPEN_CALLS = 100_000
DEFAULT_MAX_REMEMBERED_CALLS = 100_000
_NEVER = datetime.max.replace(tzinfo=UTC)

ClosedBy = Literal["quiet", "memory", "flush", "no-correlation-id"]


def leg_time(event: CdrEvent) -> datetime | None:
    """The time a leg counts at for the watermark."""
    return event.report_time or event.cdr.release_time or event.cdr.start_time


def _leg_order(event: CdrEvent) -> tuple[datetime, datetime, str]:
    return (event.cdr.start_time or _NEVER, event.report_time or _NEVER, event.event_id)


@dataclass(frozen=True, slots=True)
class Call:
    """The legs of one call, in order of start time, as known when it was emitted."""

    correlation_id: str | None
    legs: tuple[CdrEvent, ...]
    revision: int
    """1 the first time; each update (late legs) one higher."""
    closed_by: ClosedBy

    @property
    def report_ids(self) -> list[str]:
        return [leg.event_id for leg in self.legs]

    @property
    def start(self) -> datetime | None:
        times = [leg.cdr.start_time for leg in self.legs if leg.cdr.start_time is not None]
        return min(times, default=None)

    @property
    def end(self) -> datetime | None:
        times = [t for leg in self.legs if (t := leg.cdr.release_time or leg_time(leg))]
        return max(times, default=None)

    @property
    def answered(self) -> bool:
        return any(leg.cdr.answered for leg in self.legs)

    @property
    def direction(self) -> str | None:
        """The direction of the first leg."""
        return self.legs[0].cdr.direction if self.legs else None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready line: what ``cdr-publisher calls`` prints."""
        return {
            "correlation_id": self.correlation_id,
            "report_ids": self.report_ids,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "answered": self.answered,
            "direction": self.direction,
            "legs": len(self.legs),
            "revision": self.revision,
            "update": self.revision > 1,
            "closed_by": self.closed_by,
        }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass
class _Open:
    legs: list[CdrEvent]
    ids: set[str]
    newest: datetime | None
    lane: int
    revision: int


@dataclass
class _Lane:
    watermark: datetime | None = None
    # (newest leg time, tie-breaker, correlation id); stale entries are skipped when popped.
    due: list[tuple[datetime, int, str]] = field(default_factory=list)


class CallAssembler:
    """Feed events with :meth:`add`; each call returns the calls that became complete."""

    def __init__(
        self,
        *,
        quiet: timedelta = DEFAULT_QUIET,
        max_open_calls: int = DEFAULT_MAX_OPEN_CALLS,
        max_remembered_calls: int = DEFAULT_MAX_REMEMBERED_CALLS,
    ) -> None:
        if max_open_calls < 1 or max_remembered_calls < 0:
            raise ValueError("max_open_calls must be >= 1 and max_remembered_calls >= 0")
        self.quiet = quiet
        self.max_open_calls = max_open_calls
        self.max_remembered_calls = max_remembered_calls
        self._open: dict[str, _Open] = {}
        self._remembered: OrderedDict[str, tuple[tuple[CdrEvent, ...], int]] = OrderedDict()
        self._lanes: dict[int, _Lane] = {}
        self._seq = 0

    @property
    def open_calls(self) -> int:
        return len(self._open)

    @property
    def remembered_calls(self) -> int:
        return len(self._remembered)

    def watermark(self, lane: int = 0) -> datetime | None:
        found = self._lanes.get(lane)
        return found.watermark if found else None

    def add(self, event: CdrEvent, lane: int = 0) -> list[Call]:
        """Take one leg (``lane``: its partition); return the calls it completed, oldest first."""
        state = self._lanes.setdefault(lane, _Lane())
        moment = leg_time(event)
        if moment is not None and (state.watermark is None or moment > state.watermark):
            state.watermark = moment
        out: list[Call] = []
        cid = event.correlation_id
        if not cid:
            out.append(Call(None, (event,), 1, "no-correlation-id"))
        else:
            self._join(cid, event, lane, moment or state.watermark, out)
        out.extend(self._due(state))
        return out

    def flush(self) -> list[Call]:
        """Emit every open call now (the reader stops), oldest newest-leg first."""
        pending = sorted(self._open, key=lambda cid: self._open[cid].newest or _NEVER)
        out = [self._close(cid, "flush") for cid in pending]
        for state in self._lanes.values():
            state.due.clear()
        return out

    # --- internals -----------------------------------------------------------------------------

    def _join(
        self, cid: str, event: CdrEvent, lane: int, moment: datetime | None, out: list[Call]
    ) -> None:
        call = self._open.get(cid)
        if call is None:
            legs: tuple[CdrEvent, ...] = ()
            revision = 0
            if cid in self._remembered:
                legs, revision = self._remembered[cid]
                if any(leg.event_id == event.event_id for leg in legs):
                    return  # re-delivered: the call already holds this leg
                del self._remembered[cid]
            if len(self._open) >= self.max_open_calls:
                out.extend(self._evict_one())
            times = [t for leg in legs if (t := leg_time(leg)) is not None]
            newest = max(times, default=None)
            call = _Open(list(legs), {leg.event_id for leg in legs}, newest, lane, revision + 1)
            self._open[cid] = call
        elif event.event_id in call.ids:
            return
        call.legs.append(event)
        call.ids.add(event.event_id)
        if moment is not None and (call.newest is None or moment > call.newest):
            call.newest = moment
        if call.newest is not None:
            self._seq += 1
            state = self._lanes[call.lane]
            heapq.heappush(state.due, (call.newest, self._seq, cid))
            if len(state.due) > 4 * self.max_open_calls:
                self._compact(state, call.lane)

    def _due(self, state: _Lane) -> list[Call]:
        out: list[Call] = []
        if state.watermark is None:
            return out
        limit = state.watermark - self.quiet
        while state.due and state.due[0][0] <= limit:
            newest, _, cid = heapq.heappop(state.due)
            call = self._open.get(cid)
            if call is not None and call.newest == newest:
                out.append(self._close(cid, "quiet"))
        return out

    def _evict_one(self) -> list[Call]:
        """Emit the open call whose newest leg is oldest (calls with no time at all go first)."""
        untimed = next((cid for cid, call in self._open.items() if call.newest is None), None)
        if untimed is not None:
            return [self._close(untimed, "memory")]
        best: tuple[datetime, int, str] | None = None
        for state in self._lanes.values():
            while state.due:
                newest, seq, cid = state.due[0]
                call = self._open.get(cid)
                if call is not None and call.newest == newest:
                    if best is None or (newest, seq) < best[:2]:
                        best = (newest, seq, cid)
                    break
                heapq.heappop(state.due)
        if best is None:  # pragma: no cover - every open call is timed or untimed
            return []
        return [self._close(best[2], "memory")]

    def _close(self, cid: str, why: ClosedBy) -> Call:
        call = self._open.pop(cid)
        legs = tuple(sorted(call.legs, key=_leg_order))
        if self.max_remembered_calls:
            self._remembered[cid] = (legs, call.revision)
            while len(self._remembered) > self.max_remembered_calls:
                self._remembered.popitem(last=False)
        return Call(cid, legs, call.revision, why)

    def _compact(self, state: _Lane, lane: int) -> None:
        state.due = [
            (call.newest, seq, cid)
            for seq, (cid, call) in enumerate(self._open.items())
            if call.lane == lane and call.newest is not None
        ]
        heapq.heapify(state.due)


def assemble_calls(
    events: Iterable[CdrEvent | tuple[CdrEvent, int]],
    *,
    quiet: timedelta = DEFAULT_QUIET,
    max_open_calls: int = DEFAULT_MAX_OPEN_CALLS,
    max_remembered_calls: int = DEFAULT_MAX_REMEMBERED_CALLS,
    flush_at_end: bool = True,
) -> Iterator[Call]:
    """Group events (or ``(event, partition)`` pairs) into calls, per the rules above; at the end
    of ``events`` the calls still open are emitted too (``closed_by="flush"``) unless
    ``flush_at_end`` is off."""
    assembler = CallAssembler(
        quiet=quiet, max_open_calls=max_open_calls, max_remembered_calls=max_remembered_calls
    )
    for item in events:
        event, lane = item if isinstance(item, tuple) else (item, 0)
        yield from assembler.add(event, lane)
    if flush_at_end:
        yield from assembler.flush()
