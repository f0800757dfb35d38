"""One topic the real daemon published, shared by the downstream tests (partitioning, the
consumer kit, the Java, console-consumer and kcat recipes), so the simulator -> daemon -> Kafka
run that fills it happens once per session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Message

from publisher.simulator.faults import Faults
from publisher.simulator.server import Simulator, SimulatorConfig
from tests.integration.daemon_helpers import DaemonEnv, stop, wait_for_cursor
from tests.integration.kafka_helpers import read_all

PARTITIONS = 6
HISTORY_HOURS = 2.0


@dataclass(frozen=True)
class Published:
    env: DaemonEnv
    events: list[Message]
    """Every committed event of the topic, read with read_committed."""
    partitions: int


def publish_once(bootstrap_servers: str, registry_url: str, prefix: str, log: Path) -> Published:
    """Run the daemon against the simulator (unknown keys, casing variants, duplicates and
    corrupt records on) until its cursor has caught up, stop it with SIGTERM, read the events."""
    config = SimulatorConfig(
        seed=31,
        calls_per_minute=2.0,
        history_hours=HISTORY_HOURS,
        initial_per_minute=600.0,
        pages_per_minute=6000.0,
        faults=Faults(unknown_keys=0.1, casing=0.2, duplicates=0.1, malformed=0.02),
    )
    with Simulator(config) as sim:
        env = DaemonEnv(
            bootstrap_servers,
            registry_url,
            sim.base_url,
            prefix=prefix,
            extra={"CDR_PUBLISHER_TOPIC_PARTITIONS": str(PARTITIONS)},
        )
        proc = env.start(log)
        try:
            target = (datetime.now(UTC) - timedelta(minutes=2)).timestamp()
            wait_for_cursor(env, target, timeout=240, proc=proc, log=log)
        finally:
            code = stop(proc)
        if code != 0:
            raise AssertionError(f"daemon exited {code}:\n{log.read_text()[-3000:]}")
    events = read_all(bootstrap_servers, env.events_topic)
    if len(events) < 100:
        raise AssertionError(f"only {len(events)} events published:\n{log.read_text()[-3000:]}")
    return Published(env, events, PARTITIONS)
