"""Upgrading a deployment from the layout before slots (issue 11): one state partition, a
transactional.id per org, keys without the deployment, and a transaction left open by the old
daemon when it was killed. The new daemon fences the old id, reads the old state, migrates its
keys and goes on: nothing lost, nothing published twice."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from publisher.batch import Topics, build_batch
from publisher.dedup import MarkTable, pack_marks
from publisher.events import EventEncoder, Source, unframe
from publisher.registry import ensure_event_schema
from publisher.simulator.server import Simulator, SimulatorConfig
from publisher.state.codec import Cursor, cursor_key
from publisher.webex.record import format_timestamp, parse_page
from tests.integration.daemon_helpers import DaemonEnv, stop, wait_for_cursor
from tests.integration.kafka_helpers import create_topic, read_all

HISTORY_HOURS = 3.0


def _old_commits(
    env: DaemonEnv, sim: Simulator, registry_url: str
) -> tuple[int, datetime, datetime]:
    """What the daemon before slots committed: pages of the stream's first window, each one
    transaction of its old id with events, ``dedup/<org>/live/<hour>/<seq>`` marks and the
    ``cursor/<org>/live`` record. Returns (records committed, where the old daemon started, the
    cursor's position)."""
    now = datetime.now(UTC)
    start = now - timedelta(hours=HISTORY_HOURS)
    end = start + timedelta(minutes=70)
    records = sim.records_between("stream", start, end)
    schema_id = ensure_event_schema(
        {"url": registry_url, "timeout": 30}, env.events_topic, auto_register=True
    )
    encoder = EventEncoder(schema_id)
    source = Source("stream", format_timestamp(start), format_timestamp(end))
    producer = Producer(
        {
            "bootstrap.servers": env.bootstrap_servers,
            "transactional.id": f"cdr-publisher.{env.prefix}.{env.org_id}.live",
        }
    )
    producer.init_transactions(30)
    hour = int(now.timestamp() // 3600)
    committed = MarkTable()
    half = len(records) // 2
    for seq, chunk in enumerate((records[:half], records[half:]), start=1):
        import orjson

        page = parse_page(orjson.dumps({"items": chunk}))
        batch = build_batch(
            page,
            committed=committed,
            encoder=encoder,
            topics=Topics(events=env.events_topic, dlq=env.dlq_topic),
            org_id=env.org_id,
            source=source,
        )
        position = end if seq == 2 else start
        cursor = Cursor(position, sim.base_url, seq, now)
        producer.begin_transaction()
        events = batch.events
        for key, value in zip(events.keys, events.values, strict=True):
            producer.produce(events.topic, key=key, value=value, headers=events.headers)
        for record in batch.records:  # the DLQ entries, none for this clean data
            producer.produce(
                record.topic, key=record.key, value=record.value, headers=record.headers
            )
        producer.produce(
            env.state_topic,
            key=f"dedup/{env.org_id}/live/{hour}/{seq}".encode(),
            value=pack_marks(batch.marks),
        )
        producer.produce(
            env.state_topic, key=f"cursor/{env.org_id}/live".encode(), value=cursor.encode()
        )
        producer.commit_transaction(30)
        committed.add_many(batch.marks, hour)
    return len(records), start, end


_IN_FLIGHT = textwrap.dedent(
    """
    import os, signal, sys
    from confluent_kafka import Producer
    bootstrap, tid, topic, state_topic, org = sys.argv[1:6]
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                  "transaction.timeout.ms": 600000})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, key=b"in-flight", value=b"never committed")
    p.produce(state_topic, key=f"cursor/{org}/live".encode(), value=b"never committed")
    p.flush(30)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_deployment_from_before_slots_upgrades_with_data_in_flight(
    bootstrap_servers: str, registry_url: str, admin: AdminClient, unique_name: str, tmp_path: Path
) -> None:
    """Old layout with two committed transactions and one left open by a killed old daemon:
    the new daemon fences the old id (aborting the open one at once, not after its 10 minute
    timeout), reads the old cursor and marks, writes its keys in the new layout and deletes the
    old ones, and the events topic holds every record of the span exactly once."""
    with Simulator(
        SimulatorConfig(
            seed=51,
            calls_per_minute=3.0,
            history_hours=HISTORY_HOURS,
            initial_per_minute=600.0,
            pages_per_minute=6000.0,
        )
    ) as sim:
        env = DaemonEnv(bootstrap_servers, registry_url, sim.base_url, prefix=unique_name)
        create_topic(admin, env.state_topic, config={"cleanup.policy": "compact"})
        create_topic(admin, env.events_topic, partitions=3, config={"cleanup.policy": "delete"})
        create_topic(admin, env.dlq_topic, partitions=3, config={"cleanup.policy": "delete"})
        old_count, old_start, old_position = _old_commits(env, sim, registry_url)
        subprocess.run(
            [
                sys.executable,
                "-c",
                _IN_FLIGHT,
                bootstrap_servers,
                f"cdr-publisher.{env.prefix}.{env.org_id}.live",
                env.events_topic,
                env.state_topic,
                env.org_id,
            ],
            check=False,
            timeout=60,
        )
        log = tmp_path / "daemon.log"
        started = time.time()
        proc = env.start(log)
        try:
            cursor = wait_for_cursor(
                env,
                (datetime.now(UTC) - timedelta(minutes=2)).timestamp(),
                timeout=120,
                proc=proc,
                log=log,
                committed_after=started,
            )
        finally:
            assert stop(proc) == 0
        # The open transaction was aborted by the fencing: the restore did not wait it out.
        assert time.time() - started < 90

        events: dict[str, int] = {}
        for msg in read_all(env.bootstrap_servers, env.events_topic):
            if msg.key() == b"in-flight":
                raise AssertionError("the old daemon's open transaction became visible")
            rid = unframe(msg.value())[1]["event_id"]
            events[rid] = events.get(rid, 0) + 1
        # From where the old daemon started, not from the simulator's history start: that is
        # rounded down to a minute, and a record inserted in that minute was never the old
        # daemon's to publish (1 in 20 seeds has one; it failed CI).
        expected = sim.expected_report_ids("stream", old_start, cursor.position)
        assert old_count > 0
        assert {rid: n for rid, n in events.items() if n > 1} == {}
        assert expected <= set(events)
        latest: dict[bytes, bytes | None] = {}
        for msg in read_all(env.bootstrap_servers, env.state_topic):
            latest[msg.key()] = msg.value()
        assert latest[f"cursor/{env.org_id}/live".encode()] is None  # the old key, deleted
        new = Cursor.decode(latest[cursor_key(env.prefix, env.org_id)] or b"")
        assert new.position >= old_position
        assert "slot opened" in log.read_text()
