"""Pages the client refuses never stall a job: the live stream keeps the page in the DLQ, moves
the cursor on and lets the feed fill the window; a replay notes the window as cut short
(issue 10, item 4: "pages the client refuses ... are recorded ... and the cursor moves on")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson

from publisher.daemon import Worker
from publisher.errors import WebexRefusedUrlError
from publisher.health import Health
from publisher.replay import ReplayMode, ReplayRequest
from publisher.state.codec import Cursor, cursor_key
from publisher.webex.client import RawPage
from publisher.webex.windows import Endpoint, Window, floor_ms
from tests.unit.fakes import FakeClient, FakeServices, page, records, settings


class _RefusingClient(FakeClient):
    """Serves one page of each window, then refuses the next link as the real client does."""

    def pages(self, endpoint: Endpoint, window: Window) -> Iterator[RawPage]:
        yield from super().pages(endpoint, window)
        raise WebexRefusedUrlError(
            "the next link has a backslash in its authority; not following",
            reason="backslash",
            url="https://evil.example\\@analytics-calling.webexapis.com/v1/cdr_stream",
            window=window,
        )


def _dlq(services: FakeServices) -> list[tuple[bytes | None, dict[str, bytes]]]:
    return [
        (r.value, dict(r.headers or []))
        for r in services.log
        if r.topic == services.settings.dlq_topic
    ]


def test_a_refused_next_link_moves_the_cursor_on_and_the_feed_fills_the_window() -> None:
    """The page before the refusal is published, the refusal is a DLQ entry naming the window,
    the cursor passes the window, and a gap fill fetches the window from cdr_feed."""
    stream_items, feed_items = records(10, seed=5), records(25, seed=6)
    served: list[Endpoint] = []

    def serve(endpoint: Endpoint, _window: Window) -> list[bytes]:
        served.append(endpoint)
        return [page(feed_items if endpoint is Endpoint.FEED else stream_items)]

    services = FakeServices(settings(), serve)
    services.client = lambda _org, **_kw: _RefusingClient(services.serve)  # type: ignore[method-assign]
    worker = Worker(services.settings, services=services, health=Health())
    worker.start()
    live = worker.live
    assert live is not None
    now = floor_ms(datetime.now(UTC))
    window = Window(now - timedelta(hours=2), now - timedelta(hours=1))

    live.publish_window(_RefusingClient(serve), window)
    deadline = time.monotonic() + 20
    while Endpoint.FEED not in served or worker.health.orgs["org-1"].gaps:
        assert time.monotonic() < deadline, worker.health.orgs["org-1"].gaps
        time.sleep(0.01)
    worker.replays.close()

    assert set(services.published()) >= {r["Report ID"] for r in stream_items}
    entries = _dlq(services)
    assert entries, "the refused page is not in the DLQ"
    value, headers = entries[0]
    assert b"backslash" in headers["dlq_reason"]
    assert orjson.loads(value or b"")["window"][0] == window.start.isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")
    cursor = [r for r in services.log if r.key == cursor_key("dep", "org-1")][-1]
    assert Cursor.decode(cursor.value or b"").position == window.end
    assert Endpoint.FEED in served


def test_a_replay_notes_a_window_cut_short_and_goes_on() -> None:
    """A replay whose feed window ends in a refused link keeps the page in the DLQ, says which
    window was cut short, and finishes the other windows."""
    items = records(12, seed=7)
    services = FakeServices(settings(), lambda _e, _w: [page(items)])
    services.client = lambda _org, **_kw: _RefusingClient(services.serve)  # type: ignore[method-assign]
    worker = Worker(services.settings, services=services, health=Health())
    worker.start()
    now = datetime.now(UTC)
    request = ReplayRequest("cut", now - timedelta(days=3), now - timedelta(days=1))
    worker.replays.submit(request)
    deadline = time.monotonic() + 20
    while worker.replays.get("cut")["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    worker.replays.close()

    status = worker.replays.get("cut")
    assert status["status"] == "done"
    assert status["windows_done"] == status["windows_total"] >= 4
    assert "cut short" in (status["error"] or "")
    assert len(_dlq(services)) == status["windows_total"]
    assert request.mode is ReplayMode.FILL_GAPS
