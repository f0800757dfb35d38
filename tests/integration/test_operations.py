"""The running daemon seen as an operator sees it: /metrics and /readyz against what really landed
in Kafka, readiness following the broker away and back, and no secret in anything it shows.

Every test runs the real `cdr-publisher run` process against the Webex simulator (in process, with
raised rate limits) and a real broker and registry.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from publisher.simulator.faults import Faults
from publisher.simulator.server import Simulator, SimulatorConfig
from tests.integration.conftest import PrivateKafka
from tests.integration.daemon_helpers import DaemonEnv, events_by_report_id, stop, wait_for_cursor
from tests.integration.kafka_helpers import read_all

HISTORY_HOURS = 2.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _simulator(
    faults: Faults | None = None,
    *,
    token: str = "sim-token",  # noqa: S107 - the simulator's fixed test token
    seed: int = 23,
) -> Simulator:
    return Simulator(
        SimulatorConfig(
            seed=seed,
            calls_per_minute=1.5,
            history_hours=HISTORY_HOURS,
            initial_per_minute=600.0,
            pages_per_minute=6000.0,
            static_token=token,
            faults=faults or Faults(),
        )
    )


@dataclass
class Running:
    env: DaemonEnv
    proc: subprocess.Popen[bytes]
    log: Path
    port: int

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), bytes(exc.read())

    def readyz(self) -> tuple[int, dict[str, Any]]:
        status, body = self.get("/readyz")
        return status, json.loads(body)

    def metrics_text(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200
        return body.decode()

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample by (name, sorted labels)."""
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(self.metrics_text())
            for sample in family.samples
        }

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float) -> float:
        """Poll ``check`` until true (returns the seconds it took); fail after ``timeout`` or
        when the daemon exits."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"daemon exited {self.proc.returncode} waiting for {what}:\n{self.tail()}"
                )
            try:
                if check():
                    return time.monotonic() - started
            except (OSError, ValueError):
                pass  # the endpoint is not up yet
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {timeout}s\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def _daemon(env: DaemonEnv, log: Path) -> Iterator[Running]:
    port = _free_port()
    env.extra["CDR_PUBLISHER_HTTP_PORT"] = str(port)
    proc = env.start(log)
    try:
        yield Running(env, proc, log, port)
    finally:
        if proc.poll() is None:
            stop(proc, timeout=60)


def _env(
    bootstrap: str, registry: str, sim: Simulator, unique_name: str, **extra: str
) -> DaemonEnv:
    return DaemonEnv(
        bootstrap_servers=bootstrap,
        registry_url=registry,
        base_url=sim.base_url,
        prefix=unique_name,
        extra=dict(extra),
    )


def _caught_up_target() -> float:
    # The stream's newest legal end is a minute plus our 30 s skew margin ago.
    return (datetime.now(UTC) - timedelta(minutes=2)).timestamp()


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (e.g. over every org)."""
    wanted = set(labels.items())
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and wanted <= set(sample_labels)
    )


# --- a: the figures against what was published -----------------------------------------------


def test_metrics_and_readiness_match_what_was_published(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """Once caught up, the published and DLQ counters equal what the events and DLQ topics hold,
    fetched covers them, and the daemon reports itself ready with a small cursor lag."""
    faults = Faults(malformed=0.05, duplicates=0.2, unknown_keys=0.1)
    with _simulator(faults) as sim:
        # A long poll interval once caught up leaves quiet spells in which to read both sides.
        env = _env(
            bootstrap_servers,
            registry_url,
            sim,
            unique_name,
            CDR_PUBLISHER_POLL_INTERVAL_SECONDS="15",
        )
        with _daemon(env, tmp_path / "daemon.log") as running:
            # During catch-up: the endpoint answers and the published counter never goes back.
            seen: list[float] = []

            def published_grows() -> bool:
                samples = running.metrics()
                seen.append(_value(samples, "cdr_publisher_records_published_total", source="live"))
                return seen[-1] > 0

            running.wait_until("first events published", published_grows, timeout=120)
            assert seen == sorted(seen)
            wait_for_cursor(env, _caught_up_target(), 240, running.proc, running.log)

            stable = None
            for _ in range(20):
                before = running.metrics()
                events = events_by_report_id(env)
                dlq = read_all(env.bootstrap_servers, env.dlq_topic)
                after = running.metrics()
                counters = (
                    "cdr_publisher_records_published_total",
                    "cdr_publisher_records_dlq_total",
                    "cdr_publisher_records_deduplicated_total",
                )
                if all(
                    _value(before, c, source="live") == _value(after, c, source="live")
                    for c in counters
                ):
                    stable = (after, events, dlq)
                    break
                time.sleep(1.0)  # a commit landed while we read: try again in the quiet spell
            assert stable is not None, "the counters never held still for one read of the topics"
            samples, events, dlq = stable
            status, ready = running.readyz()

    published = _value(samples, "cdr_publisher_records_published_total", source="live")
    dlq_count = _value(samples, "cdr_publisher_records_dlq_total", source="live")
    duplicates = _value(samples, "cdr_publisher_records_deduplicated_total", source="live")
    fetched = _value(samples, "cdr_publisher_records_fetched_total", endpoint="stream")
    print(
        f"\npublished {published:.0f}, distinct events {len(events)}, dlq {dlq_count:.0f} "
        f"(topic {len(dlq)}), deduplicated {duplicates:.0f}, fetched {fetched:.0f}"
    )
    assert published > 0
    assert published == len(events)
    assert all(len(msgs) == 1 for msgs in events.values())
    assert dlq_count == len(dlq)
    assert dlq_count > 0  # the simulator corrupted some records on purpose
    assert duplicates > 0  # and served some twice
    assert fetched >= published + dlq_count + duplicates
    assert status == 200
    assert ready == {"ready": True, "failing": []}
    assert _value(samples, "cdr_publisher_ready") == 1.0
    lag = _value(samples, "cdr_publisher_cursor_lag_seconds", org=env.org_id)
    # Caught up: about the API's one-minute floor plus our skew margin, far from the 12 h edge.
    assert 0 < lag < 600
    assert _value(samples, "cdr_publisher_transaction_commit_seconds_count") > 0
    assert _value(samples, "cdr_publisher_last_commit_timestamp_seconds") > 0
    assert _value(samples, "cdr_publisher_api_requests_total", endpoint="stream", status="200") > 0
    assert 0 < _value(samples, "cdr_publisher_record_lateness_seconds_count") <= published
    assert _value(samples, "cdr_publisher_dedup_marks") >= published
    assert _value(samples, "cdr_publisher_unknown_keys_total") > 0


# --- b: readiness follows the broker ---------------------------------------------------------


def test_readyz_turns_not_ready_while_the_broker_is_down(
    private_kafka: PrivateKafka, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """Stopping the daemon's broker turns /readyz to 503 naming why; starting it again brings
    /readyz back to 200 without a restart of the daemon."""
    with _simulator() as sim:
        env = _env(private_kafka.bootstrap_servers, registry_url, sim, unique_name)
        with _daemon(env, tmp_path / "daemon.log") as running:
            running.wait_until("ready", lambda: running.readyz()[0] == 200, timeout=180)
            # Caught up and idle between polls: the broker goes away as it would in production.
            wait_for_cursor(env, _caught_up_target(), 240, running.proc, running.log)
            failing: list[str] = []

            def not_ready() -> bool:
                status, body = running.readyz()
                failing[:] = body["failing"]
                return status == 503 and body["ready"] is False

            private_kafka.stop()
            try:
                went_down = running.wait_until("not ready", not_ready, timeout=240)
                samples = running.metrics()
                healthz = running.get("/healthz")[0]
            finally:
                private_kafka.start()
            back_at = time.time()

            def committing_and_ready() -> bool:
                # Ready, and two commits made after the broker returned: publishing again, not
                # a single lucky transaction between two failures.
                commits.append(
                    _value(running.metrics(), "cdr_publisher_last_commit_timestamp_seconds")
                )
                after = sorted({c for c in commits if c > back_at})
                return len(after) >= 2 and running.readyz()[0] == 200

            commits: list[float] = []
            came_back = running.wait_until("ready again", committing_and_ready, timeout=400)
            _status, body = running.readyz()
            assert running.proc.poll() is None
            # The outage cost nothing: every event is still in the topic once.
            events = events_by_report_id(env)

    print(
        f"\nnot ready {went_down:.0f}s after the broker stopped, failing: {failing}; "
        f"ready {came_back:.0f}s after it started again; /healthz meanwhile {healthz}"
    )
    assert failing
    assert any(
        entry.startswith(("degraded: kafka", "last successful poll")) for entry in failing
    ), failing
    assert _value(samples, "cdr_publisher_ready") == 0.0
    assert body == {"ready": True, "failing": []}
    assert events
    assert all(len(msgs) == 1 for msgs in events.values())


# --- c: no secret anywhere --------------------------------------------------------------------


def test_no_secret_in_logs_errors_metrics_or_config(
    bootstrap_servers: str, registry_url: str, unique_name: str, tmp_path: Path
) -> None:
    """With a token, a client secret and a SASL password set (the password configured but unused
    on a PLAINTEXT broker) at DEBUG level, none of them appears in the daemon's log, /metrics,
    /readyz, a rejected token's error, a bad setting's error or `config` output."""
    token = f"tok-{secrets.token_hex(12)}"
    wrong_token = f"tok-{secrets.token_hex(12)}"
    client_secret = f"cs-{secrets.token_hex(12)}"
    password = f"pw-{secrets.token_hex(12)}"
    all_secrets = (token, wrong_token, client_secret, password)
    shown: dict[str, str] = {}

    with _simulator(token=token) as sim:
        env = _env(
            bootstrap_servers,
            registry_url,
            sim,
            unique_name,
            CDR_PUBLISHER_WEBEX_TOKEN=token,
            CDR_PUBLISHER_WEBEX_CLIENT_SECRET=client_secret,
            CDR_PUBLISHER_KAFKA_SASL_PASSWORD=password,
            CDR_PUBLISHER_LOG_LEVEL="DEBUG",
        )
        with _daemon(env, tmp_path / "good.log") as running:
            running.wait_until("ready", lambda: running.readyz()[0] == 200, timeout=180)
            # Ready can come before the first Webex reply, whose line is the DEBUG one checked
            # below: the test raced it (lost once start-up got faster), so wait for a page.
            running.wait_until(
                "first events published",
                lambda: _value(running.metrics(), "cdr_publisher_records_published_total") > 0,
                timeout=180,
            )
            shown["metrics"] = running.metrics_text()
            shown["readyz"] = running.get("/readyz")[1].decode()
            shown["healthz"] = running.get("/healthz")[1].decode()
            assert stop(running.proc) == 0
        shown["good log"] = running.log.read_text()

        # The same deployment with a token Webex refuses: the error path must not show it.
        env.extra["CDR_PUBLISHER_WEBEX_TOKEN"] = wrong_token
        with _daemon(env, tmp_path / "refused.log") as refused:
            failing: list[str] = []

            def webex_refused() -> bool:
                status, body = refused.readyz()
                failing[:] = body["failing"]
                return status == 503 and any(f.startswith("degraded: webex") for f in failing)

            refused.wait_until("degraded by the refused token", webex_refused, timeout=180)
            shown["refused readyz"] = json.dumps(failing)
            shown["refused metrics"] = refused.metrics_text()
        shown["refused log"] = refused.log.read_text()

    environ = env.environ()
    for name, bad in (
        ("bad mechanism", {"CDR_PUBLISHER_KAFKA_SASL_MECHANISM": password}),
        ("bad json", {"CDR_PUBLISHER_KAFKA_EXTRA": f'{{"sasl.password": {password}'}),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "publisher", "run"],
            env={**environ, **bad},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1, proc.stderr
        assert "CDR_PUBLISHER_KAFKA_" in proc.stderr
        shown[name] = proc.stdout + proc.stderr
    for fmt in ("toml", "json"):
        proc = subprocess.run(
            [sys.executable, "-m", "publisher", "config", "--format", fmt],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert proc.stdout.count("**********") >= 3  # token, client secret, SASL password
        shown[f"config {fmt}"] = proc.stdout + proc.stderr

    # The checks can see what they look for: DEBUG lines were written, the daemon published.
    assert '"level":"debug"' in shown["good log"]
    assert "cdr_publisher_records_published_total" in shown["metrics"]
    assert "401" in shown["refused readyz"]
    for where, text in shown.items():
        for secret in all_secrets:
            assert secret not in text, f"a secret appears in {where}"
            # Nor a long piece of one (a truncated echo).
            assert secret[:12] not in text, f"part of a secret appears in {where}"
