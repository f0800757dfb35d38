"""Trust under hostile conditions (issue 10): transactions that outlive their timeout, someone
else's open transaction on the state topic, a daemon back after the stream's retention passed,
and a live stream racing two fill-gaps replays. Real broker, registry and daemon processes."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from publisher.events import unframe
from publisher.kafka.partitioning import slot_of
from publisher.simulator.faults import Faults
from publisher.simulator.server import Simulator, SimulatorConfig
from publisher.state.codec import Cursor
from tests.integration.conftest import PrivateKafka
from tests.integration.daemon_helpers import (
    ADMIN_AUTH,
    DaemonEnv,
    cursor_of,
    stop,
    wait_for_cursor,
)
from tests.integration.kafka_helpers import create_topic, read_all

OVERLAP = timedelta(seconds=300)


def _simulator(
    *, seed: int, history_hours: float = 3.0, calls_per_minute: float = 4.0, **faults: float
) -> Simulator:
    return Simulator(
        SimulatorConfig(
            seed=seed,
            calls_per_minute=calls_per_minute,
            history_hours=history_hours,
            initial_per_minute=600.0,
            pages_per_minute=6000.0,
            faults=Faults(**faults),
        )
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _caught_up() -> float:
    return (datetime.now(UTC) - timedelta(minutes=2)).timestamp()


def _events(env: DaemonEnv) -> Counter[str]:
    return Counter(
        unframe(m.value())[1]["event_id"] for m in read_all(env.bootstrap_servers, env.events_topic)
    )


def _assert_once(env: DaemonEnv, expected: set[str]) -> Counter[str]:
    events = _events(env)
    twice = {rid: n for rid, n in events.items() if n > 1}
    assert not twice, f"{len(twice)} records published more than once, e.g. {list(twice)[:3]}"
    missing = expected - set(events)
    assert not missing, f"{len(missing)} of {len(expected)} records never published"
    return events


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with _simulator(seed=31, duplicates=0.1, slow=0.3, slow_seconds=0.5) as running:
        yield running


# --- item 5: a transaction held open past transaction.timeout.ms ------------------------------


def test_a_transaction_held_open_past_its_timeout_is_survived(
    bootstrap_servers: str, registry_url: str, unique_name: str, sim: Simulator, tmp_path: Path
) -> None:
    """Every third transaction is held open 20 s under a 5 s transaction.timeout.ms, the broker
    up: the coordinator aborts it and bumps the epoch, which librdkafka reports as fencing; the
    daemon takes a new producer, never exits, and every record is published once."""
    env = DaemonEnv(
        bootstrap_servers,
        registry_url,
        sim.base_url,
        prefix=unique_name,
        extra={
            "CDR_PUBLISHER_KAFKA_EXTRA": json.dumps({"transaction.timeout.ms": "5000"}),
            "CDR_PUBLISHER_FAULT_TRANSACTION_PAUSE_SECONDS": "20",
            "CDR_PUBLISHER_FAULT_TRANSACTION_PAUSE_EVERY": "3",
        },
    )
    log = tmp_path / "daemon.log"
    proc = env.start(log)
    try:
        cursor = wait_for_cursor(env, _caught_up(), timeout=400, proc=proc, log=log)
        assert proc.poll() is None
    finally:
        assert stop(proc, timeout=30) == 0
    text = log.read_text()
    assert "outlived transaction.timeout.ms" in text, text[-3000:]
    assert "another instance owns this work" not in text

    expected = set(
        sim.expected_report_ids("stream", cursor.position - timedelta(hours=4), cursor.position)
    )
    _assert_once(env, expected)


def test_a_broker_stopped_longer_than_the_transaction_timeout_is_survived(
    private_kafka: PrivateKafka, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """The broker away for three times transaction.timeout.ms while the daemon publishes: it
    backs off, carries on when the broker returns, and nothing is lost or duplicated."""
    with _simulator(seed=32, slow=0.5, slow_seconds=1.0) as sim:
        env = DaemonEnv(
            private_kafka.bootstrap_servers,
            registry_url,
            sim.base_url,
            prefix=unique_name,
            extra={"CDR_PUBLISHER_KAFKA_EXTRA": json.dumps({"transaction.timeout.ms": "5000"})},
        )
        log = tmp_path / "daemon.log"
        proc = env.start(log)
        try:
            wait_for_cursor(env, 0, timeout=90, proc=proc, log=log)
            private_kafka.stop()
            time.sleep(15)
            assert proc.poll() is None, log.read_text()[-3000:]
            private_kafka.start()
            cursor = wait_for_cursor(env, _caught_up(), timeout=300, proc=proc, log=log)
        finally:
            private_kafka.start()
            assert stop(proc, timeout=30) == 0
        expected = set(
            sim.expected_report_ids("stream", cursor.position - timedelta(hours=4), cursor.position)
        )
        _assert_once(env, expected)


# --- item 6: someone else's transaction left open on the state topic ---------------------------


def _open_transaction_on(bootstrap: str, topic: str, timeout_ms: int) -> Producer:
    """A producer of another job (a killed replay, another org's daemon) that begins a
    transaction on the state topic and leaves it open."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"test-foreign-{uuid.uuid4().hex[:8]}",
            "transaction.timeout.ms": timeout_ms,
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"cursor/other/org/live", value=b"{}")
    producer.flush(30)
    return producer


def test_restore_waits_out_another_producers_open_transaction_across_two_restarts(
    bootstrap_servers: str, registry_url: str, admin: AdminClient, unique_name: str, tmp_path: Path
) -> None:
    """Another producer's transaction stays open on the state topic (a killed replay, another
    org's daemon) while the daemon is started and SIGKILLed twice: read_committed readers stop at
    that transaction, so each start waits for it, visibly in /readyz, instead of restoring an old
    state; once the broker aborts it the daemon goes on, and no record is published twice."""
    with _simulator(seed=33, history_hours=4.0, calls_per_minute=6.0) as sim:
        port = _free_port()
        env = DaemonEnv(
            bootstrap_servers,
            registry_url,
            sim.base_url,
            prefix=unique_name,
            extra={"CDR_PUBLISHER_HTTP_PORT": str(port), "CDR_PUBLISHER_WEBEX_PAGE_SIZE": "500"},
        )
        create_topic(admin, env.state_topic, config={"cleanup.policy": "compact"})
        foreign = _open_transaction_on(bootstrap_servers, env.state_topic, 30000)
        log = tmp_path / "daemon.log"
        waiting: list[str] = []
        for _restart in range(2):
            proc = env.start(log)
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                with contextlib.suppress(requests.RequestException, ValueError):
                    ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()
                    waiting += [f for f in ready["failing"] if f.startswith("restore waiting")]
                assert proc.poll() is None, log.read_text()[-3000:]
                time.sleep(0.5)
            stop(proc, signal.SIGKILL)
        proc = env.start(log)
        try:
            cursor = wait_for_cursor(env, _caught_up(), timeout=240, proc=proc, log=log)
        finally:
            assert stop(proc) == 0
        del foreign
        assert waiting, "/readyz never said the restore waits for an open transaction"
        assert "open transaction holds read_committed readers" in waiting[0]
        expected = set(
            sim.expected_report_ids("stream", cursor.position - timedelta(hours=5), cursor.position)
        )
        _assert_once(env, expected)


# --- item 7: a daemon back after the stream's retention passed ---------------------------------


def _move_cursor_back(env: DaemonEnv, by: timedelta) -> Cursor:
    """As if the daemon had been stopped ``by`` longer: its committed cursor moves back."""
    from publisher.state.codec import cursor_key

    cursor = cursor_of(env)
    assert cursor is not None
    moved = Cursor(
        cursor.position - by, cursor.region_base_url, cursor.seq + 1000, cursor.committed_at
    )
    producer = Producer(
        {"bootstrap.servers": env.bootstrap_servers, "transactional.id": f"test-{uuid.uuid4().hex}"}
    )
    producer.init_transactions(30)
    partitions = len(
        producer.list_topics(env.state_topic, timeout=10).topics[env.state_topic].partitions
    )
    producer.begin_transaction()
    producer.produce(
        env.state_topic,
        key=cursor_key(env.prefix, env.org_id),
        value=moved.encode(),
        partition=slot_of(env.org_id, partitions),  # the org's state partition
    )
    producer.commit_transaction(30)
    return moved


def test_a_gap_past_the_streams_retention_is_filled_from_the_feed_on_its_own(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """The daemon is stopped and 14 h pass (its cursor moves back 14 h, the stream keeps 12):
    started again, it records the gap, fills it from cdr_feed by itself, the metric and `state`
    show the gap and its filling, and every record of the whole span is published once."""
    with _simulator(seed=34, history_hours=16.0, calls_per_minute=1.0, duplicates=0.05) as sim:
        port = _free_port()
        env = DaemonEnv(
            bootstrap_servers,
            registry_url,
            sim.base_url,
            prefix=unique_name,
            extra={"CDR_PUBLISHER_HTTP_PORT": str(port)},
        )
        log = tmp_path / "daemon.log"
        proc = env.start(log)
        try:
            wait_for_cursor(env, _caught_up(), timeout=120, proc=proc, log=log)
        finally:
            assert stop(proc) == 0
        moved = _move_cursor_back(env, timedelta(hours=14))
        restarted = time.time()
        proc = env.start(log)
        try:
            wait_for_cursor(
                env, _caught_up(), timeout=180, proc=proc, log=log, committed_after=restarted
            )
            deadline = time.monotonic() + 300
            while True:
                ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
                filling = [f for f in ready["failing"] if "gap " in f]
                if not filling:
                    break
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, ready
                time.sleep(1)
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        finally:
            assert stop(proc) == 0
        assert f'cdr_publisher_gaps_total{{org="{env.org_id}"}} 1.0' in metrics
        state = subprocess.run(
            [sys.executable, "-m", "publisher", "state"],
            env=env.environ(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        gap_lines = [line for line in state.splitlines() if "/gap gap-" in line]
        assert gap_lines, state
        assert " done " in gap_lines[0], state
        expected = set(
            sim.expected_report_ids(
                "stream", moved.position - OVERLAP, datetime.now(UTC) - timedelta(minutes=3)
            )
        )
        _assert_once(env, expected)


# --- item 8: the live stream racing two fill-gaps replays of one span ---------------------------


def test_live_stream_and_two_overlapping_fill_gaps_replays_publish_each_record_once(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """A fresh daemon's live stream and two fill-gaps replays of the same span, posted at once,
    publish the same records concurrently: they share one mark table under one lock, so the
    topic holds every record of the span exactly once."""
    with _simulator(
        seed=35, history_hours=3.0, calls_per_minute=6.0, slow=0.5, slow_seconds=0.3
    ) as sim:
        port = _free_port()
        env = DaemonEnv(
            bootstrap_servers,
            registry_url,
            sim.base_url,
            prefix=unique_name,
            extra={"CDR_PUBLISHER_HTTP_PORT": str(port), "CDR_PUBLISHER_WEBEX_PAGE_SIZE": "500"},
        )
        log = tmp_path / "daemon.log"
        now = datetime.now(UTC)
        span = {"start": _iso(now - timedelta(hours=3)), "end": _iso(now - timedelta(minutes=10))}
        proc = env.start(log)
        try:
            _wait_for_http(port, proc, log)
            # Records of the span inserted after the replays fetched it (late ones) are not
            # theirs to publish, and the live stream reaches them only minutes later.
            posted_at = datetime.now(UTC)
            for replay_id in ("first", "second"):
                deadline = time.monotonic() + 60
                while True:
                    posted = requests.post(
                        f"http://127.0.0.1:{port}/replays",
                        json={**span, "id": replay_id},
                        headers=ADMIN_AUTH,
                        timeout=10,
                    )
                    # 503 while the daemon is still opening the org's slot.
                    if posted.status_code != 503 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert posted.status_code == 202, posted.text
            for replay_id in ("first", "second"):
                _wait_for_replay(port, replay_id, proc, log)
            wait_for_cursor(env, _caught_up(), timeout=180, proc=proc, log=log)
        finally:
            assert stop(proc) == 0
        expected = sim.expected_report_ids(
            "feed", now - timedelta(hours=3), now - timedelta(minutes=10), visible_at=posted_at
        )
        assert len(expected) > 500
        _assert_once(env, expected)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _wait_for_http(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except requests.RequestException:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)


def _wait_for_replay(port: int, replay_id: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 240
    while True:
        status = requests.get(
            f"http://127.0.0.1:{port}/replays/{replay_id}", headers=ADMIN_AUTH, timeout=10
        ).json()
        if status.get("status") == "done":
            return
        assert status.get("status") not in ("failed", "cancelled"), status
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
