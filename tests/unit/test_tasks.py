"""The one task model on fakes: the worker, the live job, fill-gaps replays and the one commit."""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from publisher.daemon import Worker
from publisher.errors import FencedError
from publisher.health import Health
from publisher.replay import ReplayMode, ReplayRequest
from publisher.state.codec import LIVE_JOB, cursor_key, fold
from publisher.webex.windows import Endpoint, Window
from tests.unit.fakes import FakeServices, live_owner, page, records, settings

NOW = datetime.now(UTC)


def _wait(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def _run_worker(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread


def test_worker_initialises_the_producer_before_it_reads_the_state() -> None:
    """init_transactions (which aborts what an older instance left open) comes before restore,
    for the slot's id and the org's id before slots, and the live job commits its cursor with
    the deployment in the key."""
    calls: list[str] = []
    items = records(30)
    services = FakeServices(settings(), lambda _e, _w: [page(items)])
    real_owner, real_restore = services.owner, services.restore

    def owner(transactional_id: str, **kwargs: object) -> object:
        made = real_owner(transactional_id, **kwargs)
        start = made.start
        made.start = lambda: (calls.append(f"init {transactional_id}"), start())[1]  # type: ignore[method-assign]
        return made

    def restore(states: object, **kwargs: object) -> None:
        calls.append("restore")
        real_restore(states, **kwargs)  # type: ignore[arg-type]

    services.owner = owner  # type: ignore[method-assign]
    services.restore = restore  # type: ignore[method-assign]
    worker = Worker(services.settings, services=services, health=Health())
    thread = _run_worker(worker)
    _wait(lambda: len(services.published()) == 30)
    worker.stop.set()
    thread.join(10)

    # On a state topic of one partition (the layout before slots) the org's old id is fenced
    # too, then the slot's producer is initialised: both before the state is read.
    assert calls[:3] == [
        "init cdr-publisher.dep.org-1.live",
        "init cdr-publisher.dep.slot.0",
        "restore",
    ]
    cursors = [r for r in services.log if r.key == cursor_key("dep", "org-1", LIVE_JOB)]
    assert cursors, "no cursor committed"
    assert sorted(services.published()) == sorted(r["Report ID"] for r in items)


def test_live_stream_and_two_fill_gaps_replays_of_one_span_publish_each_record_once() -> None:
    """The live job and two overlapping fill-gaps replays, racing over the same records, share
    one mark table checked and updated under one lock: every record is published once."""
    items = records(600)
    pages = [page(items[i : i + 50]) for i in range(0, 600, 50)]

    def serve(endpoint: Endpoint, _window: Window) -> list[bytes]:
        # Every window of either endpoint hands over every record (overlaps, redeliveries).
        time.sleep(0.001)
        return pages if endpoint is Endpoint.FEED else pages[::-1]

    services = FakeServices(settings(), serve)
    worker = Worker(services.settings, services=services, health=Health())
    thread = _run_worker(worker)
    _wait(lambda: worker.live is not None)
    span = (NOW - timedelta(days=2), NOW - timedelta(days=1))
    for replay_id in ("first", "second"):
        request = ReplayRequest(replay_id, *span, mode=ReplayMode.FILL_GAPS)
        worker.replays.submit(request)
    _wait(lambda: all(worker.replays.get(r)["status"] == "done" for r in ("first", "second")))
    worker.stop.set()
    thread.join(10)

    counts = Counter(services.published())
    assert set(counts) == {r["Report ID"] for r in items}
    assert max(counts.values()) == 1, counts.most_common(3)


def test_fill_gaps_marks_stay_for_the_horizon_and_guard_the_live_stream() -> None:
    """A finished fill-gaps replay leaves its marks in the state (no tombstones), so a restarted
    live job drops a record the replay already published; a republish deletes its own."""
    items = records(40)
    services = FakeServices(settings(), lambda _e, _w: [page(items)])
    worker = Worker(services.settings, services=services, health=Health())
    worker.start()
    span = (NOW - timedelta(days=2), NOW - timedelta(days=1))
    worker.replays.submit(ReplayRequest("fill", *span, mode=ReplayMode.FILL_GAPS))
    # A replay topic the default CDR_PUBLISHER_REPLAY_TOPIC_PATTERN allows.
    republished = f"{services.settings.events_topic}.replay.again"
    worker.replays.submit(
        ReplayRequest("again", *span, mode=ReplayMode.REPUBLISH, topic=republished)
    )
    _wait(lambda: all(worker.replays.get(r)["status"] == "done" for r in ("fill", "again")))
    worker.replays.close()

    state = [(r.key, r.value) for r in services.log if r.topic == services.settings.state_topic]
    org = fold(state, deployment="dep", orgs=["org-1"])["org-1"]
    jobs = Counter(m.job for m in org.marks)
    assert jobs["fill.fill"] >= 1  # kept
    assert jobs["republish.again"] == 0  # tombstoned when done
    # A fresh worker (a restart) publishes none of the replayed records from the stream again.
    restarted = Worker(services.settings, services=services, health=Health())
    thread = _run_worker(restarted)
    _wait(lambda: restarted.live is not None and restarted.live.position is not None)
    restarted.stop.set()
    thread.join(10)
    assert Counter(services.published()) == Counter(r["Report ID"] for r in items)
    assert len(services.published(republished)) == len(items)


def test_a_fencing_recovers_with_a_new_producer_and_a_restore() -> None:
    """A commit fenced once (a timed-out transaction looks the same) is not the end: the owner
    recovers, the state is read back, and every record is still published once."""
    items = records(20)
    services = FakeServices(settings(), lambda _e, _w: [page(items)])
    worker = Worker(services.settings, services=services, health=Health())
    owner = services.owner("cdr-publisher.dep.slot.0")
    owner.fail.append(FencedError("fenced", transaction_age_s=70.0))
    thread = _run_worker(worker)
    _wait(lambda: len(services.published()) == 20)
    worker.stop.set()
    thread.join(10)

    assert [type(e) for e in owner.recovered] == [FencedError]
    assert services.restores >= 2
    assert Counter(services.published()).most_common(1)[0][1] == 1


def test_a_fencing_the_owner_refuses_stops_the_worker() -> None:
    """When the owner re-raises (another instance holds the id), the worker stops with it."""
    services = FakeServices(settings(), lambda _e, _w: [page(records(5))])
    owner = services.owner("cdr-publisher.dep.slot.0")
    owner.fail.append(FencedError("fenced"))

    def refuse(error: Exception) -> None:
        raise FencedError("another instance owns this work now") from error

    owner.recover = refuse  # type: ignore[method-assign]
    worker = Worker(services.settings, services=services, health=Health())
    with pytest.raises(FencedError, match="another instance"):
        worker.run()


def test_a_page_larger_than_batch_max_records_commits_in_several_transactions() -> None:
    """BATCH_MAX_RECORDS bounds a transaction: a 20-record page with the bound at 7 is three
    transactions of at most 7 events, each with its marks and the cursor, every record once."""
    items = records(20)
    services = FakeServices(settings(batch_max_records=7), lambda _e, _w: [page(items)])
    worker = Worker(services.settings, services=services, health=Health())
    worker.start()
    live = worker.live
    assert live is not None
    window = Window(NOW - timedelta(hours=2), NOW - timedelta(hours=1))

    live.publish_window(services.client(worker.org), window)

    owner = live_owner(services)
    sizes = [
        sum(1 for r in t if r.topic == services.settings.events_topic) for t in owner.transactions
    ]
    assert sizes == [7, 7, 6, 0]
    assert all(
        any(r.key == cursor_key("dep", "org-1", LIVE_JOB) for r in t) for t in owner.transactions
    )
    assert sorted(services.published()) == sorted(r["Report ID"] for r in items)


def test_metrics_carry_the_org_and_a_released_slot_drops_its_orgs_gauges() -> None:
    """Counters and gauges name the org (bounded by the catalogue); once the slot is closed the
    org's gauges go (another replica reports it), while its counters stay monotonic."""
    from publisher import metrics

    def sample(name: str, **labels: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(name, labels)

    published = {"org": "org-1", "source": "live"}
    before = sample("cdr_publisher_records_published_total", **published) or 0.0
    items = records(25)
    services = FakeServices(settings(), lambda _e, _w: [page(items)])
    worker = Worker(services.settings, services=services, health=Health())
    thread = _run_worker(worker)
    _wait(lambda: len(services.published()) == 25)
    _wait(lambda: sample("cdr_publisher_org_up", org="org-1") == 1.0)
    assert sample("cdr_publisher_records_published_total", **published) == before + 25
    assert (sample("cdr_publisher_dedup_marks", org="org-1") or 0) >= 25
    assert (sample("cdr_publisher_records_fetched_total", org="org-1", endpoint="stream") or 0) > 0

    worker.close_slot(0)
    assert sample("cdr_publisher_org_up", org="org-1") is None
    assert sample("cdr_publisher_dedup_marks", org="org-1") is None
    assert sample("cdr_publisher_records_published_total", **published) == before + 25
    worker.stop.set()
    thread.join(10)


def _pages_alive() -> list[str]:
    """The page objects (raw, parsed, rows) anything still holds."""
    from publisher.webex.client import RawPage
    from publisher.webex.page import Rows
    from publisher.webex.record import ParsedPage

    gc.collect()
    return [
        type(o).__name__ for o in gc.get_objects() if isinstance(o, RawPage | ParsedPage | Rows)
    ]


def _watch_commits(services: FakeServices, owner_id: str) -> list[list[str]]:
    """For each commit of that owner: the page objects alive while it ran."""
    seen: list[list[str]] = []
    owner = services.owners[owner_id]
    commit = owner.commit

    def watched(*args: object, **kwargs: object) -> int:
        seen.append(_pages_alive())
        return commit(*args, **kwargs)  # type: ignore[arg-type]

    owner.commit = watched  # type: ignore[method-assign]
    return seen


def test_a_pages_bytes_and_rows_are_gone_before_its_transaction() -> None:
    """A page is held in one form at a time: by the time its events are produced, neither its
    bytes nor its parsed rows are (5,000 records: about 13 MB each, beside 16 MB of events)."""
    items = records(60)
    services = FakeServices(settings(), lambda _e, _w: [page(items[:30]), page(items[30:])])
    worker = Worker(services.settings, services=services, health=Health())
    worker.start()
    live = worker.live
    assert live is not None
    seen = _watch_commits(services, "cdr-publisher.dep.slot.0")

    live.publish_window(
        services.client(worker.org), Window(NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    )

    assert len(seen) == 3  # two pages, then the cursor to the window's end
    assert seen == [[], [], []]
    assert sorted(services.published()) == sorted(r["Report ID"] for r in items)


def test_a_replays_pages_are_gone_before_their_transactions() -> None:
    items = records(40)
    services = FakeServices(settings(), lambda _e, _w: [page(items[:20]), page(items[20:])])
    worker = Worker(services.settings, services=services, health=Health())
    worker.start()
    seen = _watch_commits(services, "cdr-publisher.dep.slot.0")
    span = (NOW - timedelta(days=2), NOW - timedelta(days=1))
    worker.replays.submit(ReplayRequest("fill", *span, mode=ReplayMode.FILL_GAPS))
    _wait(lambda: worker.replays.get("fill")["status"] == "done")
    worker.replays.close()

    assert len(seen) > 2
    assert all(alive == [] for alive in seen), seen
    assert Counter(services.published()) == Counter(r["Report ID"] for r in items)
