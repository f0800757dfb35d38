"""`cdr-publisher replay` against the real broker and registry and the Webex simulator.

Each test runs the real command as a process (the simulator serves in this process) and proves the
outcome with read_committed consumers: which Report IDs the events topic holds, how many times,
with which replay id, under which Kafka timestamp.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from confluent_kafka import TIMESTAMP_CREATE_TIME, Producer
from confluent_kafka.admin import AdminClient

from publisher.batch import Topics, build_batch
from publisher.dedup import MarkTable
from publisher.events import EventEncoder, Source, unframe
from publisher.registry import ensure_event_schema
from publisher.simulator.faults import Faults
from publisher.simulator.server import Simulator, SimulatorConfig
from publisher.state.codec import replay_key
from publisher.webex.record import parse_page
from tests.integration.daemon_helpers import ADMIN_AUTH, DaemonEnv, stop, wait_for_cursor
from tests.integration.kafka_helpers import create_topic, read_all

HISTORY_HOURS = 80.0
WIDEN = timedelta(minutes=60)


def _simulator(**overrides: Any) -> Simulator:
    config: dict[str, Any] = {
        "seed": 5,
        "calls_per_minute": 0.2,
        "history_hours": HISTORY_HOURS,
        "initial_per_minute": 600.0,
        "pages_per_minute": 6000.0,
    }
    config.update(overrides)
    return Simulator(SimulatorConfig(**config))


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with _simulator() as running:
        yield running


@pytest.fixture
def env(sim: Simulator, bootstrap_servers: str, registry_url: str, unique_name: str) -> DaemonEnv:
    return DaemonEnv(bootstrap_servers, registry_url, sim.base_url, prefix=unique_name)


def _span(hours_ago: float, hours: float) -> tuple[datetime, datetime]:
    """A span ending ``hours_ago`` (whole minutes): old enough that every record is inserted."""
    end = (datetime.now(UTC) - timedelta(hours=hours_ago)).replace(second=0, microsecond=0)
    return end - timedelta(hours=hours), end


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _command(start: datetime, end: datetime, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "publisher",
        "replay",
        "--start",
        _iso(start),
        "--end",
        _iso(end),
        *args,
    ]


def _replay(
    env: DaemonEnv, start: datetime, end: datetime, *args: str
) -> tuple[int, dict[str, Any], str]:
    """Run the command to its end: (exit code, the final status line, stderr)."""
    done = subprocess.run(
        _command(start, end, *args),
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    status = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return done.returncode, status, done.stderr


def _events(env: DaemonEnv, topic: str | None = None) -> dict[str, list[Any]]:
    """Report ID -> every (message, event) the topic holds for it."""
    found: dict[str, list[Any]] = {}
    for msg in read_all(env.bootstrap_servers, topic or env.events_topic):
        _sid, event = unframe(msg.value())
        found.setdefault(event["event_id"], []).append((msg, event))
    return found


def _publish_directly(env: DaemonEnv, records: list[dict[str, Any]]) -> set[str]:
    """Publish ``records`` as the daemon would have (same events, not through a replay)."""
    page = parse_page(orjson.dumps({"items": records}))
    schema_id = ensure_event_schema(
        {"url": env.registry_url, "timeout": 30}, env.events_topic, auto_register=True
    )
    batch = build_batch(
        page,
        committed=MarkTable(),
        encoder=EventEncoder(schema_id),
        topics=Topics(env.events_topic, env.dlq_topic),
        org_id=env.org_id,
        source=Source("stream", "2026-01-01T00:00:00.000Z", "2026-01-01T01:00:00.000Z"),
    )
    assert batch.published == len(page.records)
    producer = Producer({"bootstrap.servers": env.bootstrap_servers})
    events = batch.events
    for key, value in zip(events.keys, events.values, strict=True):
        producer.produce(events.topic, value=value, key=key, headers=events.headers)
    for record in batch.records:
        producer.produce(record.topic, value=record.value, key=record.key, headers=record.headers)
    assert producer.flush(30) == 0
    return {cdr.report_id for cdr in page.records}


def _assert_exactly_once(events: dict[str, list[Any]], expected: set[str]) -> None:
    twice = {rid: len(found) for rid, found in events.items() if len(found) > 1}
    assert not twice, f"published more than once: {twice}"
    missing = expected - set(events)
    assert not missing, f"{len(missing)} of {len(expected)} records missing"


def test_fill_gaps_leaves_every_report_id_of_the_span_exactly_once(
    env: DaemonEnv, sim: Simulator, admin: AdminClient
) -> None:
    """Records published earlier are skipped, the rest published: each Report ID once."""
    sim.set_faults(Faults(duplicates=0.05))  # the feed repeats records: dedup must drop them
    start, end = _span(hours_ago=6, hours=20)
    records = sim.records_between("feed", start - WIDEN, end)
    create_topic(admin, env.events_topic, partitions=3)
    earlier = _publish_directly(env, records[::3])

    code, status, stderr = _replay(env, start, end, "--id", "fg1")

    assert code == 0, stderr
    expected = {r["Report ID"] for r in records}
    assert status["fetch_start"] == (start - WIDEN).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    events = _events(env)
    _assert_exactly_once(events, expected)
    assert set(events) == expected
    assert status["published"] == len(expected - earlier)
    # The feed's repeats of a published record are skipped by the index too.
    assert status["already_published"] >= len(earlier)
    assert status["duplicates"] > 0
    assert status["fetched"] == (
        status["published"] + status["already_published"] + status["duplicates"]
    )
    replayed = [event for rid, ((_m, event),) in events.items() if rid not in earlier]
    assert all(event["replay_id"] is None for event in replayed)
    assert all(event["source"]["endpoint"] == "feed" for event in replayed)


def test_replay_killed_midway_resumes_with_no_duplicate_and_no_gap(
    env: DaemonEnv, sim: Simulator
) -> None:
    """SIGKILL after a window or more, then the same --id again: every record exactly once."""
    start, end = _span(hours_ago=6, hours=40)  # 41 h with the widening: 4 windows
    sim.set_faults(Faults(slow=1.0, slow_seconds=1.0))  # a second a request: time to kill
    proc = subprocess.Popen(
        _command(start, end, "--id", "killme"),
        env=env.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.startswith("window ") and line.split()[1].split("/")[0] not in ("0", "4"):
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = [
        json.loads(m.value())
        for m in read_all(env.bootstrap_servers, env.state_topic)
        if m.key() == replay_key(env.prefix, env.org_id, "killme")
    ]
    assert saved, "no progress was committed before the kill"
    assert 1 <= saved[-1]["windows_done"] < 4
    assert saved[-1]["status"] == "running"
    sim.set_faults(Faults())

    code, status, stderr = _replay(env, start, end, "--id", "killme")

    assert code == 0, stderr
    assert status["windows_done"] == status["windows_total"] == 4
    expected = sim.expected_report_ids("feed", start - WIDEN, end)
    events = _events(env)
    _assert_exactly_once(events, expected)
    assert set(events) == expected
    assert status["published"] == len(expected)  # counted across both runs, as committed


def test_dry_run_publishes_nothing_and_its_counts_match_the_real_runs(
    env: DaemonEnv, sim: Simulator, admin: AdminClient
) -> None:
    """--dry-run counts per mode; fill-gaps and republish then publish exactly those counts,
    republish with the replay id as header and event field."""
    start, end = _span(hours_ago=30, hours=14)
    records = sim.records_between("feed", start - WIDEN, end)
    create_topic(admin, env.events_topic, partitions=3)
    earlier = _publish_directly(env, records[::4])

    code, dry, stderr = _replay(env, start, end, "--id", "dry", "--dry-run")

    assert code == 0, stderr
    assert sum(len(v) for v in _events(env).values()) == len(earlier)  # nothing published
    assert env.state_topic not in admin.list_topics(timeout=10).topics
    would = dry["would_publish"]
    assert would == {"fill-gaps": len(records) - len(earlier), "republish": len(records)}
    assert sum(w["fill-gaps"] for w in dry["window_counts"]) == would["fill-gaps"]

    code, filled, stderr = _replay(env, start, end, "--id", "fill")
    assert code == 0, stderr
    assert filled["published"] == would["fill-gaps"]

    target = f"{env.events_topic}.replay.again"
    code, again, stderr = _replay(
        env, start, end, "--id", "again", "--mode", "republish", "--topic", target
    )
    assert code == 0, stderr
    assert again["published"] == would["republish"]
    republished = _events(env, target)
    _assert_exactly_once(republished, {r["Report ID"] for r in records})
    for ((msg, event),) in republished.values():
        assert event["replay_id"] == "again"
        assert dict(msg.headers())["replay_id"] == b"again"


def test_replayed_old_records_survive_a_topic_with_short_retention(
    env: DaemonEnv, sim: Simulator, admin: AdminClient
) -> None:
    """Records of days ago replayed into a topic with retention.ms=60000 are all there, stamped
    with their produce time (CreateTime), not the call's time, so retention does not drop them."""
    target = f"{env.events_topic}.replay.short"
    create_topic(admin, target, partitions=3, config={"retention.ms": "60000"})
    start, end = _span(hours_ago=72, hours=4)
    before_ms = int(time.time() * 1000)

    code, status, stderr = _replay(
        env, start, end, "--id", "old", "--mode", "republish", "--topic", target
    )

    assert code == 0, stderr
    after_ms = int(time.time() * 1000)
    expected = sim.expected_report_ids("feed", start - WIDEN, end)
    assert expected
    found = read_all(env.bootstrap_servers, target)
    assert {unframe(m.value())[1]["event_id"] for m in found} == expected
    for msg in found:
        kind, stamp = msg.timestamp()
        assert kind == TIMESTAMP_CREATE_TIME
        assert before_ms <= stamp <= after_ms
    assert status["published"] == len(expected)


def test_bad_input_exits_2_and_publishes_nothing(env: DaemonEnv, admin: AdminClient) -> None:
    """A span older than the feed serves: exit 2, the limit named, no topic even created (every
    other bad input is covered by the unit tests, in-process)."""
    now = datetime.now(UTC)

    code, status, stderr = _replay(
        env, now - timedelta(days=31), now - timedelta(days=30, hours=20), "--mode", "republish"
    )

    assert code == 2, stderr
    assert "at most 30 days old" in stderr
    assert status == {}
    assert env.events_topic not in admin.list_topics(timeout=10).topics
    assert env.state_topic not in admin.list_topics(timeout=10).topics


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_replay_beside_the_live_daemon_shares_the_rate_limit(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """The CLI hands the replay to the running daemon: no 429 from Webex, the live cursor keeps
    advancing, and the span ends up in the topic exactly once."""
    limits = {"initial_per_minute": 20.0, "pages_per_minute": 200.0}
    with _simulator(**limits) as sim:
        port = _free_port()
        env = DaemonEnv(
            bootstrap_servers,
            registry_url,
            sim.base_url,
            prefix=unique_name,
            extra={
                "CDR_PUBLISHER_HTTP_PORT": str(port),
                "CDR_PUBLISHER_POLL_INTERVAL_SECONDS": "6",
                "CDR_PUBLISHER_WEBEX_INITIAL_REQUESTS_PER_MINUTE": "20",
                "CDR_PUBLISHER_WEBEX_PAGE_REQUESTS_PER_MINUTE": "200",
            },
        )
        log = tmp_path / "daemon.log"
        daemon = env.start(log)
        try:
            caught_up = wait_for_cursor(
                env, (datetime.now(UTC) - timedelta(minutes=3)).timestamp(), 90, daemon, log
            )
            start, end = _span(hours_ago=8, hours=20)

            code, status, stderr = _replay(env, start, end, "--id", "beside")

            assert code == 0, stderr
            assert "handed to the daemon" in stderr
            assert status["status"] == "done"
            after = wait_for_cursor(env, caught_up.position.timestamp() + 1, 60, daemon, log)
            assert after.position > caught_up.position
            listed = requests.get(
                f"http://127.0.0.1:{port}/replays/beside", headers=ADMIN_AUTH, timeout=5
            ).json()
            assert listed["status"] == "done"
            assert sim.stats()["429"] == 0
        finally:
            stop(daemon)
        expected = sim.expected_report_ids("feed", start - WIDEN, end)
        events = _events(env)
        # Live and replayed together: each record of the span once, whichever published it.
        assert {rid: len(events.get(rid, [])) for rid in expected} == dict.fromkeys(expected, 1)


def test_replay_in_a_daemon_resumes_when_the_daemon_restarts(
    env: DaemonEnv, sim: Simulator, tmp_path: Path
) -> None:
    """POST /replays, the daemon killed midway and started again: the replay resumes by itself
    and completes with every record of the span exactly once."""
    port = _free_port()
    env.extra["CDR_PUBLISHER_HTTP_PORT"] = str(port)
    env.extra["CDR_PUBLISHER_POLL_INTERVAL_SECONDS"] = "30"
    log = tmp_path / "daemon.log"
    start, end = _span(hours_ago=20, hours=40)
    daemon = env.start(log)
    try:
        wait_for_cursor(env, 0, 60, daemon, log)  # up and publishing
        sim.set_faults(Faults(slow=1.0, slow_seconds=1.0))
        body = {"id": "inside", "start": _iso(start), "end": _iso(end)}
        posted = requests.post(
            f"http://127.0.0.1:{port}/replays", json=body, headers=ADMIN_AUTH, timeout=10
        )
        assert posted.status_code == 202, posted.text
        deadline = time.monotonic() + 60
        while True:
            status = requests.get(
                f"http://127.0.0.1:{port}/replays/inside", headers=ADMIN_AUTH, timeout=10
            ).json()
            if status["windows_done"] >= 1:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["windows_done"] < status["windows_total"]
        stop(daemon, signal.SIGKILL)
        sim.set_faults(Faults())
        daemon = env.start(log)
        deadline = time.monotonic() + 90
        while True:
            try:
                status = requests.get(
                    f"http://127.0.0.1:{port}/replays/inside", headers=ADMIN_AUTH, timeout=10
                ).json()
            except requests.RequestException:
                status = {}
            if status.get("status") == "done":
                break
            assert daemon.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
    finally:
        stop(daemon)
    expected = sim.expected_report_ids("feed", start - WIDEN, end)
    events = _events(env)
    assert {rid: len(events.get(rid, [])) for rid in expected} == dict.fromkeys(expected, 1)
