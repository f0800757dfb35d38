"""Replay a past span from ``cdr_feed`` into Kafka, exactly once and resumable.

- :mod:`.request` (pure): the request, checked, and its plan of feed windows;
- :mod:`.progress` (pure): the progress record kept in the state topic;
- :mod:`.task`: the feed job on the one task model (:mod:`publisher.task`);
- :mod:`.job`: one replay as its host holds it (start-up, status, cancel, dry run);
- :mod:`.manager`: the daemon's replays and gap fills, and the admin routes.
"""

from publisher.replay.job import ReplayJob
from publisher.replay.manager import ReplayManager
from publisher.replay.progress import FINISHED, Progress, Status
from publisher.replay.request import (
    Origin,
    Plan,
    ReplayMode,
    ReplayRequest,
    eta_seconds,
    new_replay_id,
    parse_mode,
    parse_time,
    plan,
    split_locations,
)
from publisher.replay.task import REPLAY_PRIORITY, ReplayTask, job_name, skip_published

__all__ = [
    "FINISHED",
    "REPLAY_PRIORITY",
    "Origin",
    "Plan",
    "Progress",
    "ReplayJob",
    "ReplayManager",
    "ReplayMode",
    "ReplayRequest",
    "ReplayTask",
    "Status",
    "eta_seconds",
    "job_name",
    "new_replay_id",
    "parse_mode",
    "parse_time",
    "plan",
    "skip_published",
    "split_locations",
]
