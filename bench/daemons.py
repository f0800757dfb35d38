"""Real daemon processes (``cdr-publisher run --config catalogue.toml``) for the fleet and
failover benchmarks, started the way tests/integration/daemon_helpers.py starts them: a
clean CDR_PUBLISHER_* environment, the catalogue's orgs instead of the single-org settings,
topics and deployment id under the run's prefix. Also what the benchmarks read back: a
process's CPU and RSS from /proc, its metrics, and the cursors in a state topic."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from bench.figures import ProcSample, cpu_seconds_of_stat, vmrss_bytes
from publisher.commands.config import toml_string
from publisher.state.codec import Cursor, cursor_key
from publisher.webex.auth import write_secret_file

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_catalogue(orgs: list[dict[str, Any]], directory: Path, name: str) -> Path:
    """An ``[[orgs]]`` catalogue of ``orgs`` (the simulator's orgs_info() entries) with one
    0600 token file each, as ``publisher.commands.simulate.write_orgs`` writes it for all."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"# {len(orgs)} simulated orgs"]
    for info in orgs:
        token_file = (directory / f"org-{info['n']}.token").resolve()
        write_secret_file(token_file, info["token"] + "\n")
        lines += [
            "",
            "[[orgs]]",
            f"id = {toml_string(info['org_id'])}",
            f"token_file = {toml_string(str(token_file))}",
        ]
    catalogue = directory / f"{name}.toml"
    catalogue.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return catalogue


@dataclass
class Deployment:
    """One deployment's settings; each ``start`` is one replica (process) of it."""

    bootstrap: str
    registry_url: str
    base_url: str
    prefix: str
    catalogue: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def state_topic(self) -> str:
        return f"{self.prefix}.state"

    def environ(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_PUBLISHER_")}
        env.update(
            {
                "CDR_PUBLISHER_WEBEX_BASE_URL": self.base_url,
                "CDR_PUBLISHER_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "CDR_PUBLISHER_SCHEMA_REGISTRY_URL": self.registry_url,
                "CDR_PUBLISHER_EVENTS_TOPIC": f"{self.prefix}.events",
                "CDR_PUBLISHER_STATE_TOPIC": self.state_topic,
                "CDR_PUBLISHER_DLQ_TOPIC": f"{self.prefix}.dlq",
                "CDR_PUBLISHER_DEPLOYMENT_ID": self.prefix,
                "CDR_PUBLISHER_TOPIC_PARTITIONS": "3",
                "CDR_PUBLISHER_TOPIC_REPLICATION_FACTOR": "1",
                # BENCH_LOG_LEVEL=DEBUG: every Webex reply in the replicas' logs, to see a slow run.
                "CDR_PUBLISHER_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
                # Replicas side by side: each its own port (logged), unless the caller picks one.
                "CDR_PUBLISHER_HTTP_PORT": "0",
                **self.extra,
                **more,
            }
        )
        return env

    def start(self, log: Path, **more: str) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "publisher", "run", "--config", str(self.catalogue)],
                env=self.environ(**more),
                stdout=out,
                stderr=subprocess.STDOUT,
            )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
    """Signal and wait; killed when it does not end in ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def sample(pid: int) -> ProcSample:
    """CPU seconds (user + system, every thread) and RSS of process ``pid`` now."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    return ProcSample(
        wall_s=time.monotonic(),
        cpu_s=cpu_seconds_of_stat(stat, CLK_TCK),
        rss_bytes=vmrss_bytes(status) or 0,
    )


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310 - loopback http only
        return str(reply.read().decode())


def state_records(bootstrap: str, topic: str, timeout: float = 60.0) -> list[tuple[bytes, bytes]]:
    """(key, value) of every committed record of ``topic`` up to its last stable offset, in
    order per partition (tests/integration/kafka_helpers.read_all, keys and values only)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        if topic not in meta.topics or meta.topics[topic].error is not None:
            return []
        partitions = list(meta.topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[tuple[bytes, bytes]] = []
        done = {p for p, high in ends.items() if high == 0}
        deadline = time.monotonic() + timeout
        while len(done) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {set(ends) - done} not at end")
            msgs = consumer.consume(1000, 0.5)
            if not msgs:
                # Transaction markers take offsets but are never delivered: check positions.
                for tp in consumer.position([TopicPartition(topic, p) for p in partitions]):
                    if tp.offset >= ends[tp.partition]:
                        done.add(tp.partition)
                continue
            for msg in msgs:
                if msg.error():
                    raise KafkaException(msg.error())
                key, value = msg.key(), msg.value()
                if key is not None and value is not None:
                    out.append((key, value))
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    done.add(msg.partition() or 0)
        return out
    finally:
        consumer.close()


def cursor_history(
    bootstrap: str, topic: str, deployment: str, org_ids: list[str]
) -> dict[str, list[Cursor]]:
    """Every live cursor record of each org still in the topic, oldest first."""
    keys = {cursor_key(deployment, org): org for org in org_ids}
    found: dict[str, list[Cursor]] = {org: [] for org in org_ids}
    for key, value in state_records(bootstrap, topic):
        org = keys.get(key)
        if org is not None:
            found[org].append(Cursor.decode(value))
    return found


def latest_cursors(
    bootstrap: str, topic: str, deployment: str, org_ids: list[str]
) -> dict[str, Cursor]:
    history = cursor_history(bootstrap, topic, deployment, org_ids)
    return {org: cursors[-1] for org, cursors in history.items() if cursors}
