"""Time as the rest of the package receives it: injected, so pure code and tests control it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware UTC."""
Sleep = Callable[[float], None]


def utcnow() -> datetime:
    return datetime.now(UTC)
