"""Gaps: spans the stream can no longer serve are found with exact bounds, recorded with the
cursor that passes them, and filled from cdr_feed on their own (issue 10, item 7)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson

from publisher import metrics
from publisher.daemon import Worker
from publisher.gaps import Gap, fillable
from publisher.health import Health
from publisher.kafka.sink import OutRecord
from publisher.live import RETENTION_HEADROOM, next_window
from publisher.state.codec import Cursor, cursor_key, replay_key
from publisher.webex.client import RawPage
from publisher.webex.windows import Endpoint, Window, floor_ms, oldest_start
from tests.unit.fakes import BASE_URL, FakeClient, FakeServices, live_owner, page, records, settings

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
OVERLAP = timedelta(seconds=300)
SKEW = timedelta(seconds=30)


def test_a_cursor_in_the_last_minute_before_the_retention_edge_is_a_gap_with_exact_bounds() -> None:
    """Cursor minus overlap older than the first start the stream accepts: the gap is exactly
    [cursor - overlap, the window's start), not a silent skip and not 60 s short."""
    edge = oldest_start(Endpoint.STREAM, NOW, SKEW)
    cursor = edge + timedelta(seconds=30)

    planned = next_window(cursor, NOW, overlap=OVERLAP, skew=SKEW)

    assert planned.window is not None
    assert planned.window.start == edge + RETENTION_HEADROOM
    assert planned.gap is not None
    assert (planned.gap.start, planned.gap.end) == (cursor - OVERLAP, planned.window.start)


def test_a_daemon_down_for_three_days_finds_the_whole_span_as_a_gap() -> None:
    """A cursor three days old: the gap runs from it (minus the overlap) to the stream's edge."""
    cursor = NOW - timedelta(days=3)

    planned = next_window(cursor, NOW, overlap=OVERLAP, skew=SKEW)

    assert planned.gap is not None
    assert planned.gap.start == cursor - OVERLAP
    assert planned.window is not None
    assert planned.gap.end == planned.window.start


def test_a_recent_cursor_has_no_gap() -> None:
    """Within the retention, the next window starts at cursor - overlap and nothing is lost."""
    cursor = NOW - timedelta(hours=1)

    planned = next_window(cursor, NOW, overlap=OVERLAP, skew=SKEW)

    assert planned.gap is None
    assert planned.window is not None
    assert planned.window.start == cursor - OVERLAP


def test_what_the_feed_no_longer_serves_is_lost_the_rest_is_filled() -> None:
    """A gap reaching past the feed's 30 days is cut: the old part is lost, the rest filled."""
    gap = Gap(NOW - timedelta(days=32), NOW - timedelta(days=28), "test")

    parts = fillable(gap, NOW, SKEW)

    assert parts.lost is not None
    assert parts.fill is not None
    assert parts.lost.start == gap.start
    assert parts.lost.end == parts.fill.start
    assert parts.fill.end == gap.end
    assert NOW - timedelta(days=30) < parts.fill.start < NOW - timedelta(days=29)


class _MovingClient(FakeClient):
    """Starts every stream window 10 minutes later than asked, as the real client does when the
    window's start aged past the retention while it waited for the rate limiter."""

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[RawPage]:
        moved = Window(window.start + timedelta(minutes=10), window.end)
        for raw in super().pages(endpoint, moved):
            yield RawPage(raw.body, raw.url, raw.tracking_id, moved, endpoint)


def _seed_cursor(services: FakeServices, position: datetime) -> None:
    cursor = Cursor(position, BASE_URL, 1, position)
    key = cursor_key("dep", "org-1")
    services.log.append(OutRecord(services.settings.state_topic, key, cursor.encode()))


def _progress_records(transaction: list[OutRecord]) -> list[dict[str, object]]:
    return [
        orjson.loads(r.value)
        for r in transaction
        if r.key and r.key.startswith(b"replay/") and r.value is not None
    ]


def test_a_window_started_later_than_asked_records_the_skipped_span_as_a_gap() -> None:
    """The span the client skipped is a gap, registered (as a fill-gaps replay of origin gap) in
    the transaction that moves the cursor past it."""
    items = records(10)
    services = FakeServices(settings(), lambda _e, _w: [page(items)])
    services.client = lambda _org, **_kw: _MovingClient(services.serve)  # type: ignore[method-assign]
    _seed_cursor(services, datetime.now(UTC) - timedelta(hours=2))
    worker = Worker(services.settings, services=services, health=Health())
    worker.start()
    live = worker.live
    assert live is not None
    now = floor_ms(datetime.now(UTC))
    asked = Window(now - timedelta(hours=2), now - timedelta(hours=1))

    live.publish_window(_MovingClient(services.serve), asked)
    worker.replays.close()

    owner = live_owner(services)
    passing = [
        t
        for t in owner.transactions
        for r in t
        if r.key == cursor_key("dep", "org-1")
        and Cursor.decode(r.value or b"").position == asked.end
    ]
    assert len(passing) == 1, "no single transaction moved the cursor past the window"
    progress = _progress_records(passing[0])
    assert len(progress) == 1
    assert progress[0]["origin"] == "gap"
    assert progress[0]["mode"] == "fill-gaps"
    assert progress[0]["start"] == asked.start.isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def test_a_fresh_orgs_first_window_started_later_than_asked_is_no_gap() -> None:
    """A new org (no cursor) starts where the stream's data starts when its first request goes
    out: a start that aged while the limiter waited skipped nothing ever promised, so no gap
    fill (each of which reads the events topic) runs for it; a new fleet would run one per org."""
    items = records(30)
    pages = [page(items[i : i + 10]) for i in range(0, 30, 10)]
    services = FakeServices(settings(), lambda _e, _w: pages)
    services.client = lambda _org, **_kw: _MovingClient(services.serve)  # type: ignore[method-assign]
    worker = Worker(services.settings, services=services, health=Health())
    worker.start()
    live = worker.live
    assert live is not None
    assert live.cursor is None
    now = floor_ms(datetime.now(UTC))
    asked = Window(now - timedelta(hours=2), now - timedelta(hours=1))

    live.publish_window(_MovingClient(services.serve), asked)
    worker.replays.close()

    owner = live_owner(services)
    cursors = [
        Cursor.decode(r.value or b"").position
        for t in owner.transactions
        for r in t
        if r.key == cursor_key("dep", "org-1")
    ]
    assert asked.end in cursors
    assert not [p for t in owner.transactions for p in _progress_records(t)]
    # The pages before the window's end keep the cursor at the window's start, never later: a
    # crash there resumes where the org's data began, not at the clock (which skipped it all).
    moved_start = asked.start + timedelta(minutes=10)
    assert cursors[:3] == [moved_start] * 3, cursors


def test_a_daemon_back_after_three_days_fills_the_gap_from_the_feed_on_its_own() -> None:
    """A cursor three days old: the live job moves on from the stream's edge and the gap is
    filled from cdr_feed by a replay the daemon starts itself; /readyz names the gap while it is
    being filled; the metric counts it; every record arrives once."""
    stream_items, feed_items = records(30, seed=1), records(200, seed=2)
    asked: list[Endpoint] = []
    lock = threading.Lock()

    def serve(endpoint: Endpoint, _window: Window) -> list[bytes]:
        with lock:
            asked.append(endpoint)
        time.sleep(0.01)
        return [page(feed_items)] if endpoint is Endpoint.FEED else [page(stream_items)]

    services = FakeServices(settings(), serve)
    cursor = datetime.now(UTC) - timedelta(days=3)
    _seed_cursor(services, cursor)
    gaps_before = metrics.GAPS.labels(org="org-1")._value.get()
    health = Health()
    worker = Worker(services.settings, services=services, health=health)
    seen_gap_in_health: list[str] = []
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        org_health = health.orgs.get("org-1", Health())
        seen_gap_in_health.extend(org_health.gaps.values())
        published = Counter(services.published())
        if set(published) >= {r["Report ID"] for r in feed_items + stream_items} and not (
            org_health.gaps
        ):
            break
        time.sleep(0.01)
    worker.stop.set()
    thread.join(10)

    assert max(Counter(services.published()).values()) == 1
    assert set(services.published()) == {r["Report ID"] for r in feed_items + stream_items}
    assert Endpoint.FEED in asked
    assert any("being filled from cdr_feed" in text for text in seen_gap_in_health)
    assert org_health.gaps == {}
    assert metrics.GAPS.labels(org="org-1")._value.get() == gaps_before + 1
    # The gap's replay is done, and recorded so in the state.
    done = [
        orjson.loads(r.value)
        for r in services.log
        if r.key and r.key.startswith(replay_key("dep", "org-1", "gap-")) and r.value
    ]
    assert done[-1]["status"] == "done"
    assert done[-1]["origin"] == "gap"
