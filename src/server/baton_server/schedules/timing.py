"""When a schedule fires: its slots, computed from its type, in its time zone.

Slots are instants (aware datetimes). Cron expressions are read in the schedule's IANA
time zone by cronsim, which follows Debian cron's rules at daylight-saving changes: a
local time that does not exist that day fires once, at the first valid instant after
the gap (02:30 on a spring-forward night fires at 03:00), and a local time that occurs
twice fires once, at its first occurrence. Expressions with a wildcard hour keep their
cadence through the repeated hour. Intervals are elapsed time from an anchor (the time
the interval was set), so they are the same in every zone. A fixed time is one slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
MAX_INTERVAL = timedelta(days=366)
#: Counting missed cron slots stops here (the count is then a lower bound).
MAX_COUNTED = 100_000
_EPSILON = timedelta(microseconds=1)


class TimingError(ValueError):
    """A schedule's timing fields are invalid; ``field`` names the culprit."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(description)
        self.field = field
        self.description = description


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``timezone`` field)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimingError("timezone", f"unknown IANA time zone '{name}'") from None


def check_cron(expression: str, tz: ZoneInfo, now: datetime) -> None:
    """Raise unless ``expression`` is a 5-field cron expression that fires again."""
    if len(expression.split()) != 5:
        raise TimingError(
            "cron_expression",
            "a cron expression has 5 fields: minute hour day-of-month month day-of-week",
        )
    try:
        next(CronSim(expression, now.astimezone(tz)))
    except CronSimError as error:
        raise TimingError("cron_expression", f"invalid cron expression: {error}") from None
    except StopIteration:
        raise TimingError("cron_expression", "the cron expression never fires") from None


def interval_of(value: int, unit: str) -> timedelta:
    """``value`` ``unit``s, checked (at least one second, at most 366 days)."""
    if value < 1:
        raise TimingError("interval_value", "the interval must be at least 1 (one second)")
    length = timedelta(seconds=value * UNIT_SECONDS[unit])
    if length > MAX_INTERVAL:
        raise TimingError("interval_value", "the interval must be at most 366 days")
    return length


@dataclass(frozen=True)
class Timing:
    """A schedule's slots. Exactly one of ``cron``, ``interval`` and ``fixed`` is set.

    Slots are returned in UTC: Python compares two times of one zone by their wall
    clock, which cannot tell the two occurrences of a repeated hour apart.
    """

    tz: ZoneInfo
    anchor: datetime
    cron: str | None = None
    interval: timedelta | None = None
    fixed: datetime | None = None

    def next_after(self, moment: datetime) -> datetime | None:
        """The first slot strictly after ``moment``; None when there is none."""
        if self.cron is not None:
            try:
                found: datetime = next(CronSim(self.cron, moment.astimezone(self.tz)))
            except StopIteration:
                return None
            return found.astimezone(UTC)
        if self.interval is not None:
            steps = max(1, (moment - self.anchor) // self.interval + 1)
            return self.anchor + steps * self.interval
        assert self.fixed is not None
        return self.fixed if self.fixed > moment else None

    def latest_until(self, moment: datetime) -> datetime | None:
        """The last slot at or before ``moment``; None when there is none."""
        if self.cron is not None:
            # cronsim's reverse iteration is strictly before its start; slots are whole
            # minutes, so starting just after the current second includes `moment`.
            start = moment.replace(microsecond=0) + _EPSILON
            try:
                found: datetime = next(CronSim(self.cron, start.astimezone(self.tz), reverse=True))
            except StopIteration:
                return None
            return found.astimezone(UTC)
        if self.interval is not None:
            steps = (moment - self.anchor) // self.interval
            return self.anchor + steps * self.interval if steps >= 1 else None
        assert self.fixed is not None
        return self.fixed if self.fixed <= moment else None

    def count(self, first: datetime, last: datetime) -> int:
        """How many slots lie in ``[first, last]`` (both slots)."""
        if last < first:
            return 0
        if self.interval is not None:
            return (last - first) // self.interval + 1
        if self.cron is None:
            return 1
        counted = 1
        for slot in CronSim(self.cron, first.astimezone(self.tz)):
            if slot.astimezone(UTC) > last or counted >= MAX_COUNTED:
                break
            counted += 1
        return counted

    def upcoming(self, first: datetime | None, count: int) -> list[datetime]:
        """``first`` and the slots after it, ``count`` in all."""
        found: list[datetime] = []
        slot = first
        while slot is not None and len(found) < count:
            found.append(slot)
            slot = self.next_after(slot)
        return found
