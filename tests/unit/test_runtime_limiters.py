"""A process that gave an org's slot away and gets it back counts what the other replica spent."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from publisher.health import Health
from publisher.runtime import Runtime
from publisher.settings import Settings
from publisher.state.codec import LIVE_JOB, Cursor
from publisher.state.memory import OrgState
from publisher.webex.ratelimit import Kind


def _limiter_after(org: OrgState, runtime: Runtime) -> list[float]:
    client = runtime.client(org, priority=0, sleep=time.sleep, locations=None)
    return client._limiter.sends(Kind.INITIAL)


def test_a_slot_given_away_and_taken_back_seeds_from_the_state_topic() -> None:
    """The first open seeds from the cursor's recorded sends. After forget_org (the slot went
    to another replica) the org's cursor holds that replica's sends: they are counted, where
    the old limiter, kept, knew only this process's stale history (32 of 30 in a fleet test)."""
    settings = Settings(org_id="org-1", webex_token="t", webex_initial_requests_per_minute=30)  # type: ignore[arg-type]
    runtime = Runtime(settings, health=Health())
    org = OrgState(settings.deployment_id, "org-1")
    now = time.time()
    org.cursors[LIVE_JOB] = Cursor(datetime.now(UTC), None, 1, datetime.now(UTC))
    first = _limiter_after(org, runtime)
    other_replicas = tuple(round(now - 10 + i * 0.5, 3) for i in range(12))
    org.cursors[LIVE_JOB] = Cursor(
        datetime.now(UTC), None, 2, datetime.now(UTC), sends=(other_replicas, ())
    )

    kept = _limiter_after(org, runtime)  # same ownership: the limiter's own history stands
    runtime.forget_org("org-1")
    back = _limiter_after(org, runtime)

    assert len(first) == len(kept)
    # The other replica's twelve sends and the unrecorded tail of its last request.
    assert len(back) > len(first) + len(other_replicas) - 1


def test_a_new_owner_bounds_the_unrecorded_requests_by_the_recorded_time() -> None:
    """Webex's 1 initial request a minute, sent 5 s before the move and recorded 1 s after it
    was sent: the old owner could not have sent another, so the new one waits the 55 s left of
    that minute (with the limiter's 1 % slack), not a minute from the move."""
    settings = Settings(org_id="org-1", webex_token="t")  # type: ignore[arg-type]
    runtime = Runtime(settings, health=Health())
    org = OrgState(settings.deployment_id, "org-1")
    now = time.time()
    org.cursors[LIVE_JOB] = Cursor(
        datetime.now(UTC), None, 1, datetime.now(UTC), sends=((now - 5,), ()), sends_at=now - 4
    )

    client = runtime.client(org, priority=0, sleep=time.sleep, locations=None)
    wait = client._limiter.next_free(Kind.INITIAL) - time.monotonic()

    assert 55.0 < wait < 56.0, wait
