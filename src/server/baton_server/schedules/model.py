"""Schedules and their fires as the service sees them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from baton_server.schedules.timing import UNIT_SECONDS, Timing, zone

UPCOMING = 5


@dataclass(frozen=True)
class Schedule:
    id: uuid.UUID
    project_id: uuid.UUID
    workflow_id: uuid.UUID
    workflow_name: str
    workflow_status: str
    name: str
    description: str
    schedule_type: str
    cron_expression: str | None
    interval_value: int | None
    interval_unit: str | None
    execution_time: datetime | None
    anchor_at: datetime
    parameters: dict[str, Any]
    enabled: bool
    timezone: str
    overlap_policy: str
    catchup_window_s: int
    next_fire_at: datetime | None
    last_run_id: str | None
    last_slot_at: datetime | None
    last_run_status: str | None
    last_run_started_at: datetime | None
    last_run_completed_at: datetime | None
    missed_count: int
    skipped_count: int
    created_by: str
    created_at: datetime
    updated_at: datetime

    def timing(self) -> Timing:
        interval = None
        if self.interval_value is not None and self.interval_unit is not None:
            interval = timedelta(seconds=self.interval_value * UNIT_SECONDS[self.interval_unit])
        return Timing(
            tz=zone(self.timezone),
            anchor=self.anchor_at,
            cron=self.cron_expression,
            interval=interval,
            fixed=self.execution_time,
        )

    @property
    def state(self) -> tuple[str, str]:
        """Whether it fires (``scheduled``) and, if not, why: (state, reason)."""
        if not self.enabled:
            return "disabled", "the schedule is disabled"
        if self.workflow_status != "active":
            return (
                "workflow_inactive",
                f"workflow '{self.workflow_name}' is {self.workflow_status}; slots pass"
                " without a run until it is active",
            )
        if self.next_fire_at is None:
            return "finished", "its fixed time has passed"
        return "scheduled", ""

    def upcoming(self) -> list[datetime]:
        """The next few fire times, from ``next_fire_at``; none unless it fires."""
        if self.state[0] != "scheduled":
            return []
        return self.timing().upcoming(self.next_fire_at, UPCOMING)


@dataclass(frozen=True)
class ScheduleFire:
    scheduled_for: datetime
    outcome: str
    run_id: str | None
    cancelled_run_id: str | None
    reason: str | None
    missed_count: int | None
    missed_until: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class TimingSpec:
    """The fields that decide when a schedule fires, as a request gives them (None:
    absent)."""

    schedule_type: str | None = None
    cron_expression: str | None = None
    interval_value: int | None = None
    interval_unit: str | None = None
    execution_time: datetime | None = None
    timezone: str | None = None

    def given(self) -> dict[str, Any]:
        """The fields present, by name."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class ScheduleChanges:
    """The fields an update sets (None: unchanged)."""

    timing: TimingSpec
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    enabled: bool | None = None
    overlap_policy: str | None = None
    catchup_window_s: int | None = None
