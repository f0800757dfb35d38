"""/readyz decides from the daemon's health: each failing condition is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from publisher.health import Health
from publisher.http_api import readiness

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _healthy() -> Health:
    return Health(
        loop_heartbeat=1000.0,
        producer_ready=True,
        state_restored=True,
        last_poll_ok=1000.0,
        cursor=NOW - timedelta(minutes=5),
    )


def test_a_healthy_daemon_is_ready() -> None:
    """Producer up, state restored, a recent poll, a fresh cursor: nothing fails."""
    assert readiness(_healthy(), now=NOW, monotonic=1010.0, poll_interval_s=60) == []


def test_each_condition_is_reported() -> None:
    """Every failing condition appears in the reply, in words an operator can act on."""
    health = _healthy()
    health.producer_ready = False
    health.state_restored = False
    health.cursor = NOW - timedelta(hours=11)
    health.degraded = "kafka: broker down"

    failing = readiness(health, now=NOW, monotonic=1000.0 + 3 * 60 + 61, poll_interval_s=60)

    joined = " | ".join(failing)
    assert "producer not initialised" in joined
    assert "state not restored" in joined
    assert "last successful poll" in joined
    assert "12 h retention" in joined
    assert "broker down" in joined


def test_no_poll_yet_is_not_ready() -> None:
    """Before the first successful poll the daemon is not ready."""
    health = _healthy()
    health.last_poll_ok = 0.0

    assert readiness(health, now=NOW, monotonic=1.0, poll_interval_s=60) == [
        "no successful poll yet"
    ]
