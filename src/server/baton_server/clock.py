"""The one clock seam: what "now" is for schedules and deliveries.

Production uses the system clock; tests pass their own to walk through daylight-saving
changes and outages without waiting.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


SYSTEM_CLOCK: Clock = SystemClock()
