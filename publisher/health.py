"""What the daemon loop tells the HTTP endpoint: written by the loop, read by the HTTP thread."""

from __future__ import annotations

from dataclasses import dataclass
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
