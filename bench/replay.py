"""Replay throughput with the API limits off: a ``republish`` replay of a span of the
simulator's ``cdr_feed`` into a fresh topic, timed from start to done (HTTP, parse, publish)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from bench.daemon_rss import LEGS_PER_CALL
from bench.figures import Timing
from publisher.settings import Settings
from publisher.simulator.server import Simulator, SimulatorConfig

SPAN = timedelta(hours=1)


def run_replay(settings: Settings, records: int) -> Timing:
    """Replay about ``records`` records (one hour of traffic at the matching call rate)."""
    from publisher.health import Health  # noqa: PLC0415
    from publisher.replay import ReplayJob, ReplayMode, ReplayRequest  # noqa: PLC0415 - optional
    from publisher.runtime import Runtime  # noqa: PLC0415
    from publisher.state.memory import OrgState  # noqa: PLC0415

    config = SimulatorConfig(
        seed=31,
        calls_per_minute=records / (LEGS_PER_CALL * SPAN.total_seconds() / 60),
        history_hours=4.0,
        rate_limits=False,
    )
    with Simulator(config) as sim:
        replay_settings = settings.model_copy(
            update={
                "webex_base_url": sim.base_url,
                "webex_token": SecretStr("sim-token"),
                "webex_initial_requests_per_minute": 60000.0,
                "webex_page_requests_per_minute": 60000.0,
            }
        )
        now = datetime.now(UTC)
        end = (now - timedelta(hours=1)).replace(second=0, microsecond=0)
        request = ReplayRequest(
            replay_id=f"bench-{int(time.time())}",
            start=end - SPAN,
            end=end,
            mode=ReplayMode.REPUBLISH,
            widen=timedelta(0),
        )
        org = OrgState(replay_settings.deployment_id, replay_settings.org_id)
        job = ReplayJob(Runtime(replay_settings, health=Health()), org, request)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        status = job.run()
        wall1, cpu1 = time.perf_counter(), time.process_time()
    if status.get("status") != "done":
        raise RuntimeError(f"replay ended {status.get('status')}: {status.get('error')}")
    # CPU time here includes the in-process simulator serving the pages.
    return Timing(int(status.get("published") or 0), wall1 - wall0, cpu1 - cpu0)
