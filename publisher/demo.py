"""``make demo``: simulator -> daemon -> Kafka on the local stack, then what was published.

Runs the real daemon process against the Webex simulator (with duplicated and corrupted records
switched on, rate limits raised so it takes a minute, not hours), waits until its cursor has caught
up with the stream, stops it with SIGTERM, and reads the topics back with read_committed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer

from publisher.commands.simulate import write_orgs
from publisher.errors import PublisherError
from publisher.events import unframe
from publisher.kafka.reader import drain, high_watermarks
from publisher.registry import fetch_schema
from publisher.simulator.faults import Faults
from publisher.simulator.server import Simulator, SimulatorConfig
from publisher.state.codec import Cursor, cursor_key

ORGS = 3
REGIONAL_ORGS = 1
HISTORY_HOURS = 3.0
CALLS_PER_MINUTE = 1.5
CATCH_UP_TIMEOUT_S = 240.0


def _read(bootstrap: str, topic: str) -> list[Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = high_watermarks({"bootstrap.servers": bootstrap}, topic, partitions)
        starts = dict.fromkeys(partitions, 0)
        return list(drain(consumer, topic, starts, ends, timeout=60, what="reading"))
    finally:
        consumer.close()


def _cursors(
    bootstrap: str, state_topic: str, deployment: str, orgs: list[str]
) -> dict[str, Cursor]:
    """The latest committed cursor of each org."""
    keys = {cursor_key(deployment, org): org for org in orgs}
    found: dict[str, Cursor] = {}
    for msg in _read(bootstrap, state_topic):
        org = keys.get(msg.key() or b"")
        if org is not None and msg.value() is not None:
            found[org] = Cursor.decode(msg.value())
    return found


def _metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def main(bootstrap: str, registry: str, workdir: Path) -> int:
    run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    prefix = f"demo.{run_id}"
    topics = {"events": f"{prefix}.cdr", "state": f"{prefix}.cdr.state", "dlq": f"{prefix}.cdr.dlq"}
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"daemon-{run_id}.log"
    faults = Faults(duplicates=0.05, malformed=0.01, unknown_keys=0.05, casing=0.2)
    sim_config = SimulatorConfig(
        seed=7,
        orgs=ORGS,
        regional_orgs=REGIONAL_ORGS,
        calls_per_minute=CALLS_PER_MINUTE,
        history_hours=HISTORY_HOURS,
        initial_per_minute=120.0,
        pages_per_minute=1200.0,
        static_token="demo-token",  # noqa: S106 - the simulator's own test credential
        faults=faults,
    )
    print(
        f"simulator: {ORGS} orgs, each with its own token ({REGIONAL_ORGS} in another region, "
        f"found by 451), {CALLS_PER_MINUTE} calls/min over the last {HISTORY_HOURS:.0f} h, "
        "duplicates, corrupt records, unknown keys and key casing variants switched on"
    )
    with Simulator(sim_config) as sim:
        catalogue = write_orgs(sim, workdir / f"orgs-{run_id}")
        orgs = sim.org_ids
        print(f"org catalogue: {catalogue} (one token file per org)")
        http_port = str(_free_port())  # several demos (or engineers) may run at once
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_PUBLISHER_")}
        env.update(
            {
                "CDR_PUBLISHER_WEBEX_BASE_URL": sim.base_url,
                "CDR_PUBLISHER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "CDR_PUBLISHER_SCHEMA_REGISTRY_URL": registry,
                "CDR_PUBLISHER_EVENTS_TOPIC": topics["events"],
                "CDR_PUBLISHER_STATE_TOPIC": topics["state"],
                "CDR_PUBLISHER_DLQ_TOPIC": topics["dlq"],
                "CDR_PUBLISHER_DEPLOYMENT_ID": prefix,
                "CDR_PUBLISHER_TOPIC_PARTITIONS": "3",
                "CDR_PUBLISHER_TOPIC_REPLICATION_FACTOR": "1",
                "CDR_PUBLISHER_POLL_INTERVAL_SECONDS": "5",
                "CDR_PUBLISHER_WEBEX_INITIAL_REQUESTS_PER_MINUTE": "120",
                "CDR_PUBLISHER_WEBEX_PAGE_REQUESTS_PER_MINUTE": "1200",
                "CDR_PUBLISHER_WEBEX_PAGE_SIZE": "500",
                "CDR_PUBLISHER_HTTP_PORT": http_port,
                "CDR_PUBLISHER_LOG_FORMAT": "console",
            }
        )
        print(f"daemon: cdr-publisher run --config {catalogue}  (log: {log_path})")
        with log_path.open("ab") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "publisher", "run", "--config", str(catalogue)],
                env=env,
                stdout=log,
                stderr=log,
            )
        try:
            caught_up = _wait_until_caught_up(bootstrap, topics["state"], prefix, orgs, daemon)
            metrics_text = _fetch(f"http://127.0.0.1:{http_port}/metrics")
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=30)
        if not caught_up:
            print(log_path.read_text()[-4000:])
            print("demo: the daemon did not catch up in time", file=sys.stderr)
            return 1
        print(f"daemon stopped with SIGTERM, exit code {code}")
        finals = _cursors(bootstrap, topics["state"], prefix, orgs)
        if len(finals) < len(orgs):
            print("demo: an org committed no cursor", file=sys.stderr)
            return 1
        # What must be in Kafka: every record served whose insertion time the committed cursor
        # of its org has passed (a page fetched just before SIGTERM may be aborted, and comes
        # with the next run).
        served: set[str] = set()
        for n, org in enumerate(orgs, start=1):
            final = finals[org]
            covered = sim.expected_report_ids(
                "stream", final.position - timedelta(hours=HISTORY_HOURS + 1), final.position, org=n
            )
            served |= sim.served_report_ids(n) & covered
            region = f", region {final.region_base_url}" if n > ORGS - REGIONAL_ORGS else ""
            print(f"  org {org}: cursor {final.position:%H:%M:%S} UTC{region}")
    code = _report(bootstrap, registry, topics, served, metrics_text)
    print("\nThe stack stays up. Look around (these find the local stack by themselves):")
    for line in next_commands(topics):
        print(f"  {line}")
    return code


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_path() -> str:
    """How to call this checkout's CLI from the current folder (``make demo`` runs in the
    checkout, whose ``.venv/bin`` is not on a newcomer's PATH)."""
    cli = Path(sys.executable).parent / "cdr-publisher"
    if not cli.exists():
        return "cdr-publisher"
    try:
        return str(cli.relative_to(Path.cwd()))
    except ValueError:
        return str(cli)


def next_commands(topics: dict[str, str]) -> list[str]:
    """The commands the demo prints at its end (README shows them with placeholders)."""
    cli = cli_path()
    return [
        f"{cli} tail --from-beginning --max 3 --topic {topics['events']}",
        f"{cli} calls --from-beginning --max 5 --topic {topics['events']}",
        f"{cli} state --topic {topics['state']}",
        "make stack-down",
    ]


def _fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - loopback
            return str(reply.read().decode())
    except OSError:
        return ""


def _wait_until_caught_up(
    bootstrap: str,
    state_topic: str,
    deployment: str,
    orgs: list[str],
    daemon: subprocess.Popen[bytes],
) -> bool:
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    last_print = 0.0
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            return False
        try:
            cursors = _cursors(bootstrap, state_topic, deployment, orgs)
        except Exception:  # noqa: BLE001 - the topic may not exist yet
            cursors = {}
        if len(cursors) == len(orgs):
            lag = datetime.now(UTC) - min(c.position for c in cursors.values())
            if time.monotonic() - last_print > 5:
                print(
                    f"  {len(orgs)} orgs, the furthest behind {lag.total_seconds() / 60:.1f} min "
                    f"from now, {sum(c.seq for c in cursors.values())} transactions"
                )
                last_print = time.monotonic()
            if lag < timedelta(minutes=3):
                return True
        time.sleep(2)
    return False


def _report(
    bootstrap: str, registry: str, topics: dict[str, str], served: set[str], metrics_text: str
) -> int:
    events = _read(bootstrap, topics["events"])
    dlq = _read(bootstrap, topics["dlq"])
    decoded = []
    schema_ids = set()
    for msg in events:
        schema_id, event = unframe(msg.value())
        schema_ids.add(schema_id)
        decoded.append((msg, event))
    for schema_id in schema_ids:
        fetch_schema(
            {"url": registry, "timeout": 30}, schema_id
        )  # every id resolves in the registry
    ids = Counter(event["event_id"] for _, event in decoded)
    dlq_ids = {msg.key().decode() for msg in dlq if msg.key()}
    print()
    print(
        f"events topic {topics['events']}: {len(events)} events, {len(ids)} distinct Report IDs, "
        f"{sum(1 for c in ids.values() if c > 1)} published twice"
    )
    per_org = Counter(event["org_id"] for _, event in decoded)
    print("  by org_id: " + ", ".join(f"{org} {n}" for org, n in sorted(per_org.items())))
    print(
        f"simulator served {len(served)} distinct Report IDs up to the cursor; "
        f"missing from events+DLQ: {len(served - set(ids) - dlq_ids)}"
    )
    print(
        f"duplicates suppressed by dedup: "
        f"{_metric(metrics_text, 'cdr_publisher_records_deduplicated_total'):.0f}"
    )
    print(f"DLQ {topics['dlq']}: {len(dlq)} entries")
    for msg in dlq[:3]:
        reason = dict(msg.headers() or []).get("dlq_reason", b"").decode()
        print(f"  key={msg.key().decode() if msg.key() else None}: {reason}")
    print(f"schema ids used: {sorted(schema_ids)} (subject {topics['events']}-value)")
    by_call: dict[str, list[dict[str, Any]]] = {}
    for _, event in decoded:
        by_call.setdefault(event["correlation_id"] or event["event_id"], []).append(event)
    call = next((legs for legs in by_call.values() if len(legs) >= 2), None)
    if call:
        print(f"\ntwo decoded events of one call (Correlation ID {call[0]['correlation_id']}):")
        for event in call[:2]:
            cdr = event["cdr"]
            summary = {
                k: cdr[k]
                for k in (
                    "direction",
                    "call_type",
                    "calling_number",
                    "called_number",
                    "start_time",
                    "duration",
                    "related_reason",
                    "user_type",
                )
            }
            print(
                orjson.dumps(
                    {
                        "event_id": event["event_id"],
                        "report_time": event["report_time"],
                        "source": event["source"],
                        "cdr (excerpt)": summary,
                    },
                    option=orjson.OPT_INDENT_2,
                ).decode()
            )
    ok = all(c == 1 for c in ids.values()) and not (served - set(ids) - dlq_ids)
    print("\nexactly once: " + ("yes" if ok else "NO"))
    return 0 if ok else 1


def run_demo() -> int:
    from publisher import stack  # noqa: PLC0415

    try:
        config = stack.StackConfig.from_env()
        addrs = stack.up(config)
        print(f"local stack: kafka {addrs['kafka']}, registry {addrs['registry']}")
        return main(addrs["kafka"], addrs["registry"], Path("demo-output"))
    except PublisherError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
