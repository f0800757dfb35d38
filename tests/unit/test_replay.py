"""Replay planning, progress records, the index filter and bad input: pure, no Kafka, no HTTP."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from publisher.batch import Batch
from publisher.cli import main
from publisher.dedup import MarkTable, mark_of
from publisher.errors import UsageError
from publisher.events import Source, build_event
from publisher.health import Health
from publisher.published_index import KEEP_MARGIN, SpanFilter
from publisher.replay import (
    Progress,
    ReplayManager,
    ReplayMode,
    ReplayRequest,
    Status,
    eta_seconds,
    parse_mode,
    plan,
    skip_published,
    split_locations,
)
from publisher.runtime import Runtime
from publisher.settings import ENV_PREFIX, Settings
from publisher.state.memory import OrgState
from publisher.webex.record import format_timestamp, parse_page
from publisher.webex.windows import Endpoint, longest

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
SKEW = timedelta(seconds=30)
ORG = "org-1"


def _request(**changes: object) -> ReplayRequest:
    values: dict[str, object] = {
        "replay_id": "r1",
        "start": NOW - timedelta(days=3),
        "end": NOW - timedelta(days=2),
    }
    values.update(changes)
    return ReplayRequest(**values)  # type: ignore[arg-type]


def _plan(request: ReplayRequest) -> tuple[datetime, list[tuple[datetime, datetime]]]:
    result = plan(request, now=NOW, org_id=ORG, skew=SKEW)
    return result.fetch_start, [(w.start, w.end) for w in result.windows]


def test_plan_widens_the_start_and_cuts_legal_contiguous_windows() -> None:
    """The span starts an hour early and is cut into windows of at most 12 h, edge to edge."""
    request = _request()

    fetch_start, windows = _plan(request)

    assert fetch_start == request.start - timedelta(hours=1)
    assert windows[0][0] == fetch_start
    assert windows[-1][1] == request.end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(windows))
    assert all(end - start <= longest(Endpoint.FEED, SKEW) for start, end in windows)
    assert len(windows) == 3  # 25 h in windows of 12 h less the margin


def test_plan_never_widens_past_what_the_feed_serves() -> None:
    """A span starting near the 30-day edge is widened only up to that edge."""
    start = NOW - timedelta(days=30) + timedelta(minutes=10)

    fetch_start, _windows = _plan(_request(start=start, end=start + timedelta(hours=2)))

    assert start - timedelta(hours=1) < fetch_start <= start
    assert fetch_start >= NOW - timedelta(days=30)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"start": NOW - timedelta(days=31)}, "at most 30 days old"),
        ({"end": NOW - timedelta(minutes=4)}, "more than 5 minutes ago"),
        ({"end": NOW - timedelta(days=4)}, "must be after the start"),
        ({"org": "org-2"}, "serves org 'org-1'"),
        ({"replay_id": "a/b"}, "replay id 'a/b'"),
        ({"widen": timedelta(hours=25)}, "widen must be between 0 and 1440 minutes"),
        ({"topic": " "}, "topic must not be empty"),
    ],
)
def test_plan_refuses_bad_requests_naming_the_limit(
    changes: dict[str, object], needle: str
) -> None:
    """Each bad request raises UsageError whose message names the rule it breaks."""
    with pytest.raises(UsageError, match=needle.replace("(", r"\(")):
        _plan(_request(**changes))


def test_unknown_mode_and_too_many_locations_are_usage_errors() -> None:
    """An unknown mode names both modes; eleven locations name Webex's limit of 10."""
    with pytest.raises(UsageError, match="use fill-gaps or republish"):
        parse_mode("everything")
    with pytest.raises(UsageError, match="at most 10 locations"):
        split_locations([",".join(f"L{i}" for i in range(11))])
    assert split_locations(["A, B", "C"]) == ("A", "B", "C")


def test_request_json_round_trips_and_refuses_unknown_fields() -> None:
    """What the CLI posts is what the daemon reads back; an unknown field is refused by name."""
    request = _request(
        mode=ReplayMode.REPUBLISH, topic="t", locations=("A",), dry_run=True, org=ORG
    )

    assert ReplayRequest.from_json(request.to_json(), now=NOW) == request
    with pytest.raises(UsageError, match="unknown field 'speed'"):
        ReplayRequest.from_json({**request.to_json(), "speed": 2}, now=NOW)
    with pytest.raises(UsageError, match="start is required"):
        ReplayRequest.from_json({"end": "2026-03-01T00:00:00Z"}, now=NOW)
    generated = ReplayRequest.from_json({"start": "2026-03-01", "end": "2026-03-02"}, now=NOW)
    assert generated.replay_id.startswith("20260320T120000Z-")
    assert generated.start == datetime(2026, 3, 1, tzinfo=UTC)


def test_progress_round_trips_and_recognises_its_own_job() -> None:
    """The state-topic record decodes to the same progress; another span under the id is named."""
    request = _request(locations=("A", "B"))
    progress = Progress.new(
        request, plan(request, now=NOW, org_id=ORG, skew=SKEW), org=ORG, topic="events"
    )
    progress = Progress.decode(
        orjson.loads(replace(progress, windows_done=2, seq=7, published=5).encode())
    )

    assert progress.windows_done == 2
    assert progress.seq == 7
    assert progress.published == 5
    assert progress.status is Status.RUNNING
    assert progress.same_job(request, topic="events") is None
    why = progress.same_job(_request(end=request.end + timedelta(hours=1)), topic="events")
    assert why is not None
    assert "already exists" in why


def test_progress_counts_a_batch() -> None:
    """Counters add the batch's published, DLQ and duplicate figures and the index's skips."""
    progress = Progress.new(
        _request(), plan(_request(), now=NOW, org_id=ORG, skew=SKEW), org=ORG, topic="t"
    )

    counted = progress.counted(
        Batch(published=3, dlq=1, duplicates=2), fetched=9, already=3, pages=1
    )

    assert (counted.fetched, counted.published, counted.dlq) == (9, 3, 1)
    assert (counted.duplicates, counted.already_published, counted.pages) == (2, 3, 1)


def test_eta_is_bound_by_the_slower_of_the_two_budgets() -> None:
    """One initial request a window at 1/min, or the follow-up pages at 10/min, whichever is
    longer; nothing left costs nothing."""
    limits = {"initial_per_minute": 1.0, "page_per_minute": 10.0}

    assert eta_seconds(windows_left=0, pages_done=9, windows_done=3, **limits) == 0.0
    assert eta_seconds(windows_left=5, pages_done=0, windows_done=0, **limits) == 300.0
    # 31 pages a window: 30 follow-ups each, 150 pages at 10/min = 900 s > 5 initials.
    assert eta_seconds(windows_left=5, pages_done=62, windows_done=2, **limits) == 900.0


def _page(*report_ids: str) -> bytes:
    records = [
        {"Report ID": rid, "Correlation ID": f"c-{rid}", "Start time": "2026-03-17T10:00:00.000Z"}
        for rid in report_ids
    ]
    return orjson.dumps({"items": records})


def test_skip_published_drops_exactly_the_indexed_records() -> None:
    """Records whose Report ID is in the index are removed and counted; the rest stay in order."""
    page = parse_page(_page("a", "b", "c"))
    index = MarkTable()
    index.add(mark_of("b"), 0)

    kept, skipped = skip_published(page, index)

    assert [cdr.report_id for cdr in kept.records] == ["a", "c"]
    assert skipped == 1
    assert skip_published(page, None) == (page, 0)


def _frame(event: dict[str, object]) -> bytes:
    return b"\x00\x00\x00\x00\x01" + orjson.dumps(event)


@pytest.mark.parametrize("shape", ["as encoded", "other JSON layout"])
def test_index_keeps_events_that_may_belong_to_the_span(shape: str) -> None:
    """Inside the span (or within the margin): kept; days outside: dropped; no start time: kept
    (a mark too many costs memory, one too few a duplicate); not our frame: ignored. The bytes
    shortcut for our own encoding and the full decode of any other layout agree."""
    lo = datetime(2026, 3, 17, tzinfo=UTC)
    keep = SpanFilter(lo, lo + timedelta(hours=12))
    inside = format_timestamp(lo + timedelta(hours=1))
    margin = format_timestamp(lo - KEEP_MARGIN + timedelta(minutes=1))
    outside = format_timestamp(lo - KEEP_MARGIN - timedelta(minutes=1))
    relayout = shape != "as encoded"

    assert keep.report_id(_frame_of(inside, relayout)) == "rid-1"
    assert keep.report_id(_frame_of(margin, relayout)) == "rid-1"
    assert keep.report_id(_frame_of(outside, relayout)) is None
    assert keep.report_id(_frame_of(None, relayout)) == "rid-1"
    assert keep.report_id(_frame_of("2026-03-17 10:00:00", relayout)) == "rid-1"
    assert keep.report_id(b'{"event_id": "x"}') is None
    assert keep.report_id(None) is None


def _frame_of(start_time: str | None, relayout: bool) -> bytes:
    cdr = parse_page(_page("rid-1")).records[0]
    event = build_event(
        cdr,
        org_id=ORG,
        source=Source("feed", "2026-03-17T00:00:00.000Z", "2026-03-17T12:00:00.000Z"),
        replay_id=None,
    )
    event["cdr"]["start_time"] = start_time
    if relayout:  # keys in another order, with spaces: only a full decode reads it
        return b"\x00\x00\x00\x00\x01" + json.dumps(dict(reversed(event.items()))).encode()
    return _frame(event)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv(ENV_PREFIX + "ORG_ID", ORG)
    monkeypatch.setenv(ENV_PREFIX + "HTTP_PORT", "0")
    monkeypatch.setenv(ENV_PREFIX + "WEBEX_TOKEN", "t")


@pytest.mark.usefixtures("settings_env")
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--start", "2000-01-01", "--end", "2000-01-02"], "at most 30 days old"),
        (["--start", "now", "--end", "2000-01-02"], "--start 'now' is not an ISO-8601 time"),
        (["--start", "2026-01-02", "--end", "2026-01-01"], "must be after the start"),
        (["--start", "2026-01-01", "--end", "2026-01-02", "--mode", "x"], "unknown mode 'x'"),
    ],
)
def test_cli_bad_input_exits_2_with_the_reason(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input stops before any I/O: exit 2, usage and the reason on stderr, stdout empty."""
    code = main(["replay", *args])

    captured = capsys.readouterr()
    assert code == 2
    assert needle in captured.err
    assert "usage:" in captured.err
    assert captured.out == ""


@pytest.mark.usefixtures("settings_env")
def test_cli_unknown_org_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An org this deployment does not serve is refused by name."""
    end = datetime.now(UTC) - timedelta(hours=2)
    start = end - timedelta(hours=1)

    code = main(["replay", "--start", start.isoformat(), "--end", end.isoformat(), "--org", "x"])

    assert code == 2
    assert "unknown org 'x': this deployment serves org 'org-1'" in capsys.readouterr().err


def test_admin_post_refuses_bad_requests_with_400_and_starts_nothing() -> None:
    """POST /replays with bad JSON, an unknown mode or a span out of range: 400 and the reason."""
    settings = Settings(org_id=ORG, webex_token="t")  # type: ignore[arg-type]
    manager = ReplayManager(Runtime(settings, health=Health()), OrgState("default", ORG))
    bodies = {
        b"not json": "not JSON",
        b'{"start": "2026-01-01", "end": "2026-01-02", "mode": "all"}': "unknown mode",
        b'{"start": "2000-01-01", "end": "2000-01-02"}': "30 days",
        b'{"end": "2000-01-02"}': "start is required",
    }
    for body, needle in bodies.items():
        status, payload = manager._post("/replays", body)
        assert status == 400
        assert needle in payload["error"]
    assert manager._list("/replays", b"")[1]["replays"] == []
