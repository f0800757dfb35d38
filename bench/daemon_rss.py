"""The real daemon (``cdr-publisher run``, a process of its own) against the simulator with API
limits off, until its cursor has caught up with 12 h of history; then its resident memory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.figures import metric_value, vmrss_bytes
from publisher.simulator.server import Simulator, SimulatorConfig

# Records per simulated call on average (legs), measured over the generator's scenario mix.
LEGS_PER_CALL = 1.58
HORIZON_HOURS = 12.0
# The daemon is caught up when its cursor is this close to now: its last window ends 90 s back
# (60 s stream rule + 30 s skew) and it polls every POLL_S.
CAUGHT_UP_LAG_S = 400.0
POLL_S = 5.0


@dataclass(frozen=True, slots=True)
class DaemonRun:
    records: int
    """Records the daemon published (its own counter)."""
    rss_bytes: int
    peak_rss_bytes: int | None
    seconds: float
    dedup_marks: int | None


def calls_per_minute_for(records: int, hours: float = HORIZON_HOURS) -> float:
    """The simulator rate that puts about ``records`` records into ``hours`` of history."""
    return records / (LEGS_PER_CALL * hours * 60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - loopback http only
        return str(reply.read().decode())


def run_daemon(
    *,
    records: int,
    bootstrap: str,
    registry_url: str,
    prefix: str,
    timeout_s: float,
    log_path: Path,
) -> DaemonRun:
    port = _free_port()
    config = SimulatorConfig(
        seed=23,
        calls_per_minute=calls_per_minute_for(records),
        history_hours=HORIZON_HOURS + 1,
        rate_limits=False,
        cache_buckets=1000,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDR_PUBLISHER_")}
    with Simulator(config) as sim:
        env.update(
            {
                "CDR_PUBLISHER_WEBEX_BASE_URL": sim.base_url,
                "CDR_PUBLISHER_WEBEX_TOKEN": "sim-token",
                "CDR_PUBLISHER_WEBEX_INITIAL_REQUESTS_PER_MINUTE": "60000",
                "CDR_PUBLISHER_WEBEX_PAGE_REQUESTS_PER_MINUTE": "60000",
                "CDR_PUBLISHER_WEBEX_PAGE_SIZE": "5000",
                "CDR_PUBLISHER_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "CDR_PUBLISHER_SCHEMA_REGISTRY_URL": registry_url,
                "CDR_PUBLISHER_EVENTS_TOPIC": f"{prefix}.events",
                "CDR_PUBLISHER_STATE_TOPIC": f"{prefix}.state",
                "CDR_PUBLISHER_DLQ_TOPIC": f"{prefix}.dlq",
                "CDR_PUBLISHER_ORG_ID": "bench-org",
                "CDR_PUBLISHER_DEPLOYMENT_ID": prefix,
                "CDR_PUBLISHER_TOPIC_PARTITIONS": "3",
                "CDR_PUBLISHER_TOPIC_REPLICATION_FACTOR": "1",
                "CDR_PUBLISHER_DEDUP_HORIZON_HOURS": str(HORIZON_HOURS),
                # A 12 h horizon is legal only without the overlap (horizon >= 12 h + overlap).
                "CDR_PUBLISHER_OVERLAP_SECONDS": "0",
                "CDR_PUBLISHER_POLL_INTERVAL_SECONDS": str(POLL_S),
                "CDR_PUBLISHER_HTTP_PORT": str(port),
                "CDR_PUBLISHER_LOG_LEVEL": "WARNING",
            }
        )
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "publisher", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started = time.monotonic()
        try:
            return _wait_caught_up(proc, port, started, timeout_s, log_path)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_caught_up(
    proc: subprocess.Popen[bytes], port: int, started: float, timeout_s: float, log_path: Path
) -> DaemonRun:
    status = Path(f"/proc/{proc.pid}/status")
    url = f"http://127.0.0.1:{port}/metrics"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}; see {log_path}")
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the daemon did not catch up in {timeout_s:.0f} s; see {log_path}")
        time.sleep(2.0)
        try:
            text = _get(url)
        except OSError:
            continue  # not listening yet
        lag = metric_value(text, "cdr_publisher_cursor_lag_seconds")
        if lag is None or lag > CAUGHT_UP_LAG_S:
            continue
        published = metric_value(text, "cdr_publisher_records_published_total", {"source": "live"})
        marks = metric_value(text, "cdr_publisher_dedup_marks")
        seconds = time.monotonic() - started
        # Settle: the last page's memory is what a caught-up daemon keeps between polls.
        time.sleep(POLL_S)
        proc_status = status.read_text()
        rss = vmrss_bytes(proc_status)
        peak = _vmhwm(proc_status)
        if rss is None:
            raise RuntimeError("no VmRSS for the daemon process")
        return DaemonRun(
            records=int(published or 0),
            rss_bytes=rss,
            peak_rss_bytes=peak,
            seconds=seconds,
            dedup_marks=int(marks) if marks is not None else None,
        )


def _vmhwm(status_text: str) -> int | None:
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None
