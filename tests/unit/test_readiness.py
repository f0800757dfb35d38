"""/readyz decides from the daemon's health: each failing condition is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from publisher.health import Health
from publisher.http_api import org_problems, readiness

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


def _fleet(*failing: str) -> Health:
    health = _healthy()
    health.fleet = True
    health.slots, health.joined = [0, 1], True
    for org in ("acme", "globex", "initech"):
        child = _healthy()
        if org in failing:
            child.degraded = "webex: 401 token revoked"
        health.orgs[org] = child
    return health


def test_one_failing_org_of_a_fleet_is_named_but_keeps_the_replica_ready() -> None:
    """A customer's revoked token must not take the replica out of its Service (metrics
    scraping, rolling updates): it stays ready and /readyz names the org in orgs_failing."""
    health = _fleet("globex")
    assert readiness(health, now=NOW, monotonic=1010.0, poll_interval_s=60) == []
    assert org_problems(health, now=NOW, monotonic=1010.0, poll_interval_s=60) == [
        "org globex: degraded: webex: 401 token revoked"
    ]


def test_a_fleet_whose_every_org_fails_or_whose_kafka_fails_is_not_ready() -> None:
    everyone = _fleet("acme", "globex", "initech")
    assert readiness(everyone, now=NOW, monotonic=1010.0, poll_interval_s=60) == [
        "every org is failing (3): see orgs_failing"
    ]
    kafka = _fleet()
    kafka.degraded = "kafka: broker down"
    assert readiness(kafka, now=NOW, monotonic=1010.0, poll_interval_s=60) == [
        "degraded: kafka: broker down"
    ]


def test_one_org_keeps_failing_readiness_on_its_problems() -> None:
    """A deployment of one org (no fleet) is not ready while its org fails, as before."""
    health = _healthy()
    health.orgs["only"] = _healthy()
    health.orgs["only"].degraded = "webex: 401 token revoked"
    assert readiness(health, now=NOW, monotonic=1010.0, poll_interval_s=60) == [
        "degraded: webex: 401 token revoked"
    ]
    assert org_problems(health, now=NOW, monotonic=1010.0, poll_interval_s=60) == []


def test_bulk_observe_gives_what_observe_gives_one_by_one() -> None:
    """observe_many (a page's lateness in one go) yields the same buckets, count and sum as one
    observe() per amount, bounds included."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from publisher.metrics import observe_many

    amounts = [0.0, 59.0, 60.0, 60.5, 299.0, 3600.0, 1e9, 7.25, 86400.0]
    one, bulk = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("h", "h", buckets=(60, 300, 3600, 86400), registry=one)
    h_bulk = Histogram("h", "h", buckets=(60, 300, 3600, 86400), registry=bulk)
    for amount in amounts:
        h_one.observe(amount)

    observe_many(h_bulk, amounts)

    def samples(registry: CollectorRegistry) -> list[bytes]:
        lines = generate_latest(registry).splitlines()
        return [line for line in lines if line.startswith(b"h_") and b"created" not in line]

    assert samples(bulk) == samples(one)
    assert len(samples(one)) == 7  # five buckets, count, sum
