"""Issue 10 item 4 end to end: records that break limits, not the parser, do not stop ingestion.

The real daemon against the simulator, the real broker and registry: among good records the
simulator serves records with a 5 MB field and records carrying bytes that are not UTF-8. Every
good record is published exactly once, each bad one is in the DLQ once (the 5 MB one cut, with
its size and SHA-256), and the cursor passes them: the daemon neither exits nor loops.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from publisher.events import DLQ_KEEP_BYTES, unframe
from publisher.simulator.faults import (
    BAD_UTF8_BYTES,
    BAD_UTF8_KIND,
    HUGE_FIELD_BYTES,
    HUGE_KIND,
    Faults,
)
from publisher.simulator.server import Simulator, SimulatorConfig
from tests.integration.daemon_helpers import DaemonEnv, events_by_report_id, stop, wait_for_cursor
from tests.integration.kafka_helpers import read_all

HISTORY_HOURS = 2.0


def test_a_5mb_record_and_one_not_utf8_go_to_the_dlq_and_the_rest_is_published_once(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """Records with a 5 MB field and with bytes that are not UTF-8 among good ones: every good
    record once in the events topic, each bad one once in the DLQ (the 5 MB one truncated with
    its size and hash, the other with its raw bytes), the cursor past them, exit 0 at the end."""
    config = SimulatorConfig(
        seed=41,
        calls_per_minute=1.5,
        history_hours=HISTORY_HOURS,
        initial_per_minute=600.0,
        pages_per_minute=6000.0,
        # ~260 records in the span (the traffic follows the clock): about 8 of each kind, so that
        # the chance of none at all is well under 0.1 %.
        faults=Faults(huge=0.03, bad_utf8=0.03),
    )
    with Simulator(config) as sim:
        env = DaemonEnv(bootstrap_servers, registry_url, sim.base_url, prefix=unique_name)
        log = tmp_path / "daemon.log"
        proc = env.start(log)
        try:
            target = (datetime.now(UTC) - timedelta(minutes=2)).timestamp()
            cursor = wait_for_cursor(env, target, timeout=240, proc=proc, log=log)
            # Still running after passing them, and polling on (no restart loop).
            time.sleep(3)
            assert proc.poll() is None, log.read_text()[-3000:]
        finally:
            code = stop(proc)
        assert code == 0, log.read_text()[-3000:]

        bad = sim.malformed_report_ids()
        expected = sim.expected_records(
            "stream", cursor.position - timedelta(hours=HISTORY_HOURS + 1), cursor.position
        )
    huge = {rid for rid, kind in bad.items() if kind == HUGE_KIND}
    not_utf8 = {rid for rid, kind in bad.items() if kind == BAD_UTF8_KIND}
    assert huge, "the simulator served no 5 MB record"
    assert not_utf8, "the simulator served no record that is not UTF-8"

    events = events_by_report_id(env)
    twice = {rid: len(msgs) for rid, msgs in events.items() if len(msgs) > 1}
    assert not twice, f"published more than once: {twice}"
    good = set(expected) - set(bad)
    missing = good - set(events)
    assert not missing, f"{len(missing)} of {len(good)} good records never published"
    assert not (set(events) & set(bad)), "a bad record was published as an event"
    for msgs in events.values():
        _schema_id, event = unframe(msgs[0].value())
        assert event["event_id"]

    dlq: dict[str, list[tuple[bytes, dict[str, bytes]]]] = {}
    for msg in read_all(bootstrap_servers, env.dlq_topic):
        assert msg.key() is not None, dict(msg.headers() or [])
        dlq.setdefault(msg.key().decode(), []).append((msg.value(), dict(msg.headers() or [])))
    assert set(dlq) == huge | not_utf8
    assert all(len(entries) == 1 for entries in dlq.values()), "a bad record in the DLQ twice"
    for rid in huge:
        ((value, headers),) = dlq[rid]
        assert headers["dlq_truncated"] == b"true"
        assert int(headers["dlq_original_size"]) > HUGE_FIELD_BYTES
        assert len(headers["dlq_sha256"]) == 64
        assert len(value) == DLQ_KEEP_BYTES
        assert b"does not fit the message limit" in headers["dlq_reason"]
    for rid in not_utf8:
        ((value, headers),) = dlq[rid]
        assert "dlq_truncated" not in headers
        assert BAD_UTF8_BYTES in value  # the record's bytes as Webex sent them
        assert rid.encode() in value
        assert headers["dlq_reason"].startswith(b"record is not valid UTF-8")
