"""What the daemon loop tells the HTTP endpoint: written by the loop, read by the HTTP thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Health:
    loop_heartbeat: float = 0.0
    """time.monotonic() of the loop's last turn."""
    producer_ready: bool = False
    state_restored: bool = False
    last_poll_ok: float = 0.0
    """time.monotonic() of the last window fetched and committed (0: never)."""
    last_error: str | None = None
    cursor: datetime | None = None
    degraded: str | None = None
    """Why the daemon cannot make progress right now (broker, registry or API down)."""
    restore_blocked: str | None = None
    """Set while a restore waits for someone else's open transaction on the state topic."""
    gaps: dict[str, str] = field(default_factory=dict)
    """Gaps being filled from cdr_feed (or lost), by fill id: what /readyz and state show."""
    slots: list[int] | None = None
    """A replica of a consumer group: the slots it owns (None: not in a group)."""
    fleet: bool = False
    """More than one org in the catalogue: /readyz details each org and the slots owned."""
    joined: bool = False
    """A replica of a consumer group: it has had its first assignment."""
    orgs: dict[str, Health] = field(default_factory=dict)
    """Per org of a fleet, its own health (polls, cursor, problems, gaps); the fields above are
    then the process's (producers, restores, Kafka)."""
