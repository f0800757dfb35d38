"""The daemon against the real broker and registry and the Webex simulator: exactly once.

Every test runs the real `cdr-publisher run` process and proves the outcome with read_committed
consumers: each Report ID the simulator served (up to the committed cursor) is in the events topic
exactly once, under its Correlation ID, decodable with the registered schema; corrupt records are in
the DLQ with their raw bytes and reason.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from publisher.events import unframe
from publisher.simulator.faults import Faults
from publisher.simulator.server import Simulator, SimulatorConfig
from publisher.state.codec import Cursor
from tests.integration.conftest import PrivateKafka
from tests.integration.daemon_helpers import (
    DaemonEnv,
    events_by_report_id,
    stop,
    wait_for_cursor,
)
from tests.integration.kafka_helpers import create_topic, read_all

HISTORY_HOURS = 3.0
FAULTS = Faults(error_5xx=0.2, malformed=0.02, unknown_keys=0.1, casing=0.2, duplicates=0.1)
# Slow replies spread one pass over several seconds, so that kills land mid-publishing too.
SLOW_FAULTS = Faults(
    error_5xx=0.2,
    malformed=0.02,
    unknown_keys=0.1,
    casing=0.2,
    duplicates=0.1,
    slow=0.5,
    slow_seconds=1.0,
)


def _simulator(faults: Faults = FAULTS, seed: int = 11, calls_per_minute: float = 1.5) -> Simulator:
    return Simulator(
        SimulatorConfig(
            seed=seed,
            calls_per_minute=calls_per_minute,
            history_hours=HISTORY_HOURS,
            initial_per_minute=600.0,
            pages_per_minute=6000.0,
            faults=faults,
        )
    )


@pytest.fixture
def sim() -> Iterator[Simulator]:
    # Seed 23: its request dice inject a 5xx in the first few requests (the dice are seeded).
    with _simulator(SLOW_FAULTS, seed=23, calls_per_minute=4.0) as running:
        yield running


def _caught_up_target() -> float:
    # The stream's newest legal end is 1 minute (plus our 30 s skew margin) ago.
    return (datetime.now(UTC) - timedelta(minutes=2)).timestamp()


def _assert_exactly_once(env: DaemonEnv, sim: Simulator, cursor_position: datetime) -> int:
    """The proof shared by the tests; returns how many events it checked."""
    expected = sim.expected_records(
        "stream", cursor_position - timedelta(hours=HISTORY_HOURS + 1), cursor_position
    )
    malformed = sim.malformed_report_ids()
    events = events_by_report_id(env)
    dlq_keys = {m.key().decode() for m in read_all(env.bootstrap_servers, env.dlq_topic) if m.key()}

    twice = {rid: len(msgs) for rid, msgs in events.items() if len(msgs) > 1}
    assert not twice, f"published more than once: {twice}"
    clean = {rid for rid in expected if rid not in malformed}
    missing = clean - set(events)
    assert not missing, f"{len(missing)} of {len(clean)} records never published"
    corrupt_with_id = {rid for rid, kind in malformed.items() if kind != "missing-report-id"}
    assert corrupt_with_id & set(expected) <= dlq_keys
    assert not (set(events) & set(malformed)), "a corrupt record was published as an event"
    for rid, (msg,) in events.items():
        if rid in expected:
            assert msg.key() == (expected[rid] or rid).encode(), f"wrong key for {rid}"
    _assert_decodable(env, [msgs[0].value() for msgs in events.values()])
    return len(events)


def _assert_decodable(env: DaemonEnv, values: list[bytes | None]) -> None:
    with SchemaRegistryClient({"url": env.registry_url, "timeout": 30}) as client:
        schemas: dict[int, object] = {}
        for value in values:
            schema_id, event = unframe(value or b"")
            if schema_id not in schemas:
                schemas[schema_id] = json.loads(client.get_schema(schema_id).schema_str)
            jsonschema.validate(event, schemas[schema_id])  # type: ignore[arg-type]


def test_sigkill_twenty_times_loses_and_duplicates_nothing(
    bootstrap_servers: str, registry_url: str, unique_name: str, sim: Simulator, tmp_path: Path
) -> None:
    """Killed with SIGKILL at 20 random moments while publishing through duplicates, 5xx and
    corrupt records, restarted each time: every record is in the events topic exactly once."""
    env = DaemonEnv(bootstrap_servers, registry_url, sim.base_url, prefix=unique_name)
    log = tmp_path / "daemon.log"
    rng = random.Random(20)
    kills = 0
    for _ in range(20):
        proc = env.start(log)
        time.sleep(rng.uniform(1.0, 5.0))
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited on its own:\n{log.read_text()[-3000:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
    started = time.time()
    proc = env.start(log)
    try:
        cursor = wait_for_cursor(
            env, _caught_up_target(), timeout=180, proc=proc, log=log, committed_after=started
        )
    finally:
        assert stop(proc) == 0
    assert kills == 20

    checked = _assert_exactly_once(env, sim, cursor.position)

    assert checked > 300
    stats = sim.stats()
    assert stats["5xx"] > 0, f"the 5xx path was not exercised: {stats}"


def _publish_through_broker_outage(
    private_kafka: PrivateKafka, env: DaemonEnv, log: Path, *, away_s: float, timeout: float
) -> Cursor:
    """Start the daemon, pull the broker away mid-stream for ``away_s``, bring it back: the
    cursor once the daemon caught up with commits made after the return."""
    proc = env.start(log)
    try:
        wait_for_cursor(env, 0, timeout=90, proc=proc, log=log)
        private_kafka.stop()
        time.sleep(away_s)
        assert proc.poll() is None, f"daemon died without its broker:\n{log.read_text()[-3000:]}"
        restarted = time.time()
        private_kafka.start()
        return wait_for_cursor(
            env, _caught_up_target(), timeout=timeout, proc=proc, log=log, committed_after=restarted
        )
    finally:
        private_kafka.start()  # a no-op when it already runs
        assert stop(proc) == 0


def test_broker_restart_during_publishing(
    private_kafka: PrivateKafka, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """The broker stops and comes back while the daemon publishes: it backs off, carries on,
    and nothing is lost or duplicated."""
    with _simulator(seed=12) as sim:
        env = DaemonEnv(
            private_kafka.bootstrap_servers, registry_url, sim.base_url, prefix=unique_name
        )
        cursor = _publish_through_broker_outage(
            private_kafka, env, tmp_path / "daemon.log", away_s=8, timeout=240
        )

        _assert_exactly_once(env, sim, cursor.position)


def test_a_broker_outage_longer_than_the_group_session_is_survived(
    private_kafka: PrivateKafka, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """The broker stays away longer than the group session (6 s here): the daemon loses its
    slots, and once the broker is back it must get them back and carry on, nothing lost or
    duplicated. librdkafka's consumer can stay out of the group after such a session time-out
    (NOT_COORDINATOR while rejoining, librdkafka#2944): a fresh clone's run saw the daemon sit
    without slots for 4 minutes."""
    with _simulator(seed=14) as sim:
        env = DaemonEnv(
            private_kafka.bootstrap_servers, registry_url, sim.base_url, prefix=unique_name,
            extra={"CDR_PUBLISHER_GROUP_SESSION_TIMEOUT_SECONDS": "6"},
        )  # fmt: skip
        log = tmp_path / "daemon.log"
        cursor = _publish_through_broker_outage(private_kafka, env, log, away_s=15, timeout=180)

        assert '"msg":"slots lost"' in log.read_text(), "the outage did not outlast the session"
        _assert_exactly_once(env, sim, cursor.position)


def test_corrupt_record_goes_to_the_dlq_and_its_neighbours_are_published(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """A record the simulator corrupts lands in the DLQ with its raw bytes and the reason; the
    events around it on the same page are published."""
    with _simulator(Faults(malformed=0.05), seed=13) as sim:
        env = DaemonEnv(bootstrap_servers, registry_url, sim.base_url, prefix=unique_name)
        log = tmp_path / "daemon.log"
        proc = env.start(log)
        try:
            cursor = wait_for_cursor(env, _caught_up_target(), timeout=120, proc=proc, log=log)
        finally:
            assert stop(proc) == 0
        malformed = sim.malformed_report_ids()
        dlq = read_all(bootstrap_servers, env.dlq_topic)

        assert malformed, "the simulator corrupted nothing"
        assert len(dlq) >= len(malformed)
        for msg in dlq:
            headers = dict(msg.headers() or [])
            raw = json.loads(msg.value() or b"")
            assert headers["dlq_reason"], "no reason"
            assert headers["source_endpoint"] == b"stream"
            if msg.key() is not None:
                rid = msg.key().decode()
                assert raw["Report ID"] == rid  # the raw record as Webex sent it
                assert rid in malformed
                reason = headers["dlq_reason"].decode()
                assert ("duration" in reason) or ("time" in reason), reason
            else:
                assert "report_id" in headers["dlq_reason"].decode()
        _assert_exactly_once(env, sim, cursor.position)


def test_a_second_instance_fences_the_first(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """Two daemons of one deployment and org, outside a consumer group (COORDINATION=none): the
    newer one's init_transactions fences the older, which stops with exit code 3 and a one-line
    reason, no traceback; the newer one carries on. (Replicas of a group share slots instead:
    tests/integration/test_replicas.py.)"""
    with _simulator(Faults(), seed=14) as sim:
        env = DaemonEnv(
            bootstrap_servers,
            registry_url,
            sim.base_url,
            prefix=unique_name,
            extra={"CDR_PUBLISHER_COORDINATION": "none"},
        )
        first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
        first = env.start(first_log)
        second = None
        try:
            wait_for_cursor(env, 0, timeout=90, proc=first, log=first_log)
            second = env.start(second_log)
            code = first.wait(timeout=60)
            started = time.time()
            wait_for_cursor(
                env, 0, timeout=90, proc=second, log=second_log, committed_after=started
            )
        finally:
            stop(first)
            if second is not None:
                assert stop(second) == 0

        text = first_log.read_text()
        assert code == 3, text[-2000:]
        assert "fenced" in text
        assert "Traceback" not in text


def test_start_up_refuses_a_state_topic_that_is_not_compacted(
    admin: AdminClient,
    bootstrap_servers: str,
    registry_url: str,
    unique_name: str,
    tmp_path: Path,
) -> None:
    """A state topic with cleanup.policy=delete stops start-up with exit 1 naming the setting."""
    env = DaemonEnv(bootstrap_servers, registry_url, "http://127.0.0.1:9", prefix=unique_name)
    create_topic(admin, env.state_topic, config={"cleanup.policy": "delete"})
    log = tmp_path / "daemon.log"

    proc = env.start(log)
    code = proc.wait(timeout=60)

    text = log.read_text()
    assert code == 1, text[-2000:]
    assert "CDR_PUBLISHER_STATE_TOPIC" in text
    assert "compact" in text
    assert "Traceback" not in text
