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
