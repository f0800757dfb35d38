"""Run the real daemon (`cdr-publisher run`) as a process against the simulator and the stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Message

from publisher.events import unframe
from publisher.settings import Settings, load_settings
from publisher.state.codec import Cursor, cursor_key
from tests.integration.kafka_helpers import read_all

# The daemons and CLIs the tests start share this admin token (the /replays routes need one).
ADMIN_TOKEN = "integration-admin-token-0123456789"
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class DaemonEnv:
    """Settings of one daemon deployment under test, as CDR_PUBLISHER_* variables."""

    bootstrap_servers: str
    registry_url: str
    base_url: str
    prefix: str
    org_id: str = "org-test"
    extra: dict[str, str] = field(default_factory=dict)
    config: Path | None = None
    """A TOML file given with --config (an [[orgs]] catalogue: no single-org settings then)."""

    @property
    def events_topic(self) -> str:
        return f"{self.prefix}.events"

    @property
    def state_topic(self) -> str:
        return f"{self.prefix}.state"

    @property
    def dlq_topic(self) -> str:
        return f"{self.prefix}.dlq"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_PUBLISHER_")}
        env.update(
            {
                "CDR_PUBLISHER_WEBEX_BASE_URL": self.base_url,
                "CDR_PUBLISHER_WEBEX_TOKEN": "sim-token",
                "CDR_PUBLISHER_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
                "CDR_PUBLISHER_SCHEMA_REGISTRY_URL": self.registry_url,
                "CDR_PUBLISHER_EVENTS_TOPIC": self.events_topic,
                "CDR_PUBLISHER_STATE_TOPIC": self.state_topic,
                "CDR_PUBLISHER_DLQ_TOPIC": self.dlq_topic,
                "CDR_PUBLISHER_ORG_ID": self.org_id,
                "CDR_PUBLISHER_DEPLOYMENT_ID": self.prefix,
                "CDR_PUBLISHER_TOPIC_PARTITIONS": "3",
                "CDR_PUBLISHER_TOPIC_REPLICATION_FACTOR": "1",
                "CDR_PUBLISHER_POLL_INTERVAL_SECONDS": "1",
                "CDR_PUBLISHER_WEBEX_INITIAL_REQUESTS_PER_MINUTE": "600",
                "CDR_PUBLISHER_WEBEX_PAGE_REQUESTS_PER_MINUTE": "6000",
                "CDR_PUBLISHER_WEBEX_PAGE_SIZE": "500",
                "CDR_PUBLISHER_HTTP_PORT": "0",
                "CDR_PUBLISHER_ADMIN_TOKEN": ADMIN_TOKEN,
                "CDR_PUBLISHER_LOG_LEVEL": "INFO",
            }
        )
        if self.config is not None:
            del env["CDR_PUBLISHER_WEBEX_TOKEN"], env["CDR_PUBLISHER_ORG_ID"]
        env.update(self.extra)
        return env

    def command(self, *args: str) -> list[str]:
        """``python -m publisher <args>``, with --config when the deployment has one."""
        config = ["--config", str(self.config)] if self.config is not None else []
        return [sys.executable, "-m", "publisher", *args, *config]

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        out = log.open("ab")
        try:
            return subprocess.Popen(
                self.command("run"),
                env=self.environ(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            out.close()


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Signal the daemon and wait: SIGTERM must end it with exit 0 within 10 seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def cursor_of(env: DaemonEnv, org_id: str | None = None) -> Cursor | None:
    key = cursor_key(env.prefix, org_id or env.org_id)
    found = None
    for msg in read_all(env.bootstrap_servers, env.state_topic):
        if msg.key() == key and msg.value() is not None:
            found = Cursor.decode(msg.value())
    return found


def wait_for_cursor(  # noqa: PLR0917 - test helper
    env: DaemonEnv,
    at_least: float,
    timeout: float,
    proc: subprocess.Popen[bytes],
    log: Path,
    committed_after: float = 0.0,
) -> Cursor:
    """Wait until the committed cursor reaches the epoch second ``at_least``, in a commit made
    after ``committed_after`` (so by the process under test, not an earlier one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            cursor = cursor_of(env)
        except Exception:  # noqa: BLE001 - the topic may not exist yet
            cursor = None
        if (
            cursor is not None
            and cursor.position.timestamp() >= at_least
            and cursor.committed_at.timestamp() >= committed_after
        ):
            return cursor
        time.sleep(1.0)
    raise AssertionError(
        f"cursor did not reach {at_least} in {timeout}s:\n{log.read_text()[-3000:]}"
    )


def events_by_report_id(env: DaemonEnv) -> dict[str, list[Message]]:
    found: dict[str, list[Message]] = {}
    for msg in read_all(env.bootstrap_servers, env.events_topic):
        _schema_id, event = unframe(msg.value())
        found.setdefault(event["event_id"], []).append(msg)
    return found


def in_process_settings(bootstrap_servers: str, registry_url: str, prefix: str) -> Settings:
    """Settings of a deployment under test for code run in the test's own process, with the
    topics and deployment id a :class:`DaemonEnv` of ``prefix`` uses."""
    return load_settings(
        kafka_bootstrap_servers=bootstrap_servers,
        schema_registry_url=registry_url,
        webex_token="sim-token",
        org_id="org-test",
        deployment_id=prefix,
        events_topic=f"{prefix}.events",
        state_topic=f"{prefix}.state",
        dlq_topic=f"{prefix}.dlq",
        topic_replication_factor=1,
    )
