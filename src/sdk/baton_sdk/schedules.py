"""``client.schedules``: run workflows on cron expressions, intervals or at a fixed time.

Example::

    schedule = await client.schedules.create(
        workflow,
        name="weekday mornings",
        cron_expression="0 9 * * 1-5",
        timezone="Europe/Zurich",
        parameters={"source": "daily_report"},
    )
    print(schedule.next_execution, schedule.upcoming_executions)
    run = await client.schedules.trigger(schedule)  # run now
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from baton.v1 import runs_pb2, schedules_pb2, schedules_pb2_grpc
from baton_sdk._convert import (
    optional_datetime,
    optional_string,
    struct_dict,
    to_datetime,
    to_struct,
    to_timestamp,
)
from baton_sdk._transport import Transport
from baton_sdk.models import Run, RunData, RunStatus, Workflow
from baton_sdk.paging import AsyncPager, rpc_listing
from baton_sdk.runs import Runs

_Proto = schedules_pb2.Schedule


class ScheduleType(enum.StrEnum):
    """How fire times are computed."""

    CRON = "cron"
    INTERVAL = "interval"
    FIXED_TIME = "fixed_time"


class IntervalUnit(enum.StrEnum):
    """The unit of an interval (``days`` are 24 hours of elapsed time)."""

    SECONDS = "seconds"
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"


class OverlapPolicy(enum.StrEnum):
    """What a fire does while the schedule's previous run has not finished."""

    SKIP = "skip"
    ALLOW = "allow"
    CANCEL_PREVIOUS = "cancel_previous"


class ScheduleState(enum.StrEnum):
    """Whether a schedule fires, and if not why."""

    SCHEDULED = "scheduled"
    DISABLED = "disabled"
    WORKFLOW_INACTIVE = "workflow_inactive"
    FINISHED = "finished"


class FireOutcome(enum.StrEnum):
    """What a schedule did with one slot."""

    FIRED = "fired"
    TRIGGERED = "triggered"
    SKIPPED_OVERLAP = "skipped_overlap"
    SKIPPED_INACTIVE = "skipped_inactive"
    MISSED = "missed"


@dataclass(frozen=True, kw_only=True)
class ScheduleExecution:
    """The last run a schedule started (seed 003's ``last_execution``).

    Attributes:
        execution_id: The run's id.
        status: The run's status now.
        started_at: When the run was created.
        completed_at: When it ended; ``None`` while it runs.
        scheduled_for: The slot it was started for.
    """

    execution_id: str
    status: RunStatus
    started_at: datetime
    completed_at: datetime | None
    scheduled_for: datetime | None


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """A workflow run on a schedule.

    Attributes:
        id: Server-assigned UUID.
        workflow_id: The workflow it runs.
        workflow_name: The workflow's name.
        name: Name.
        description: Description.
        schedule_type: How fire times are computed.
        cron_expression: For ``cron``: the 5-field expression.
        interval_value: For ``interval``: how many units between fires.
        interval_unit: For ``interval``: the unit.
        execution_time: For ``fixed_time``: when it fires.
        parameters: The input of every run it starts.
        enabled: Whether it fires.
        timezone: IANA time zone of the cron expression.
        next_execution: When it fires next; ``None`` when it will not (see ``state``).
        upcoming_executions: The next few fire times.
        last_execution: The last run it started.
        overlap_policy: What a fire does while the previous run has not finished.
        catchup_window_seconds: How late a fire may still start after an outage.
        state: Whether it fires.
        state_reason: Why not, for a human.
        missed_executions: Slots missed while no worker ran.
        skipped_executions: Slots skipped (overlap, inactive workflow).
        created_by: Who created it.
        created_at: When it was created.
        updated_at: When it last changed.
        proto: The ``baton.v1.Schedule`` message.
    """

    id: str
    workflow_id: str
    workflow_name: str
    name: str
    description: str
    schedule_type: ScheduleType
    cron_expression: str | None
    interval_value: int | None
    interval_unit: IntervalUnit | None
    execution_time: datetime | None
    parameters: dict[str, Any]
    enabled: bool
    timezone: str
    next_execution: datetime | None
    upcoming_executions: tuple[datetime, ...]
    last_execution: ScheduleExecution | None
    overlap_policy: OverlapPolicy
    catchup_window_seconds: int
    state: ScheduleState
    state_reason: str
    missed_executions: int
    skipped_executions: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    proto: schedules_pb2.Schedule = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: schedules_pb2.Schedule) -> Schedule:
        """Build from the contract's message."""
        last = None
        if message.HasField("last_execution"):
            found = message.last_execution
            last = ScheduleExecution(
                execution_id=found.execution_id,
                status=RunStatus(runs_pb2.Run.Status.Name(found.status)),
                started_at=to_datetime(found.started_at),
                completed_at=optional_datetime(found, "completed_at"),
                scheduled_for=optional_datetime(found, "scheduled_for"),
            )
        return cls(
            id=message.id,
            workflow_id=message.workflow_id,
            workflow_name=message.workflow_name,
            name=message.name,
            description=message.description,
            schedule_type=ScheduleType(_Proto.ScheduleType.Name(message.schedule_type)),
            cron_expression=optional_string(message, "cron_expression"),
            interval_value=message.interval_value if message.HasField("interval_value") else None,
            interval_unit=IntervalUnit(_Proto.IntervalUnit.Name(message.interval_unit))
            if message.HasField("interval_unit")
            else None,
            execution_time=optional_datetime(message, "execution_time"),
            parameters=struct_dict(message.parameters),
            enabled=message.enabled,
            timezone=message.timezone,
            next_execution=optional_datetime(message, "next_execution"),
            upcoming_executions=tuple(to_datetime(t) for t in message.upcoming_executions),
            last_execution=last,
            overlap_policy=OverlapPolicy(_Proto.OverlapPolicy.Name(message.overlap_policy)),
            catchup_window_seconds=message.catchup_window_seconds,
            state=ScheduleState(_Proto.State.Name(message.state)),
            state_reason=message.state_reason,
            missed_executions=message.missed_executions,
            skipped_executions=message.skipped_executions,
            created_by=message.created_by,
            created_at=to_datetime(message.created_at),
            updated_at=to_datetime(message.updated_at),
            proto=message,
        )


@dataclass(frozen=True, kw_only=True)
class ScheduleFire:
    """What a schedule did with one slot.

    Attributes:
        scheduled_for: The slot.
        outcome: What happened.
        run_id: The run started (``fired``, ``triggered``).
        cancelled_run_id: The run ``cancel_previous`` cancelled.
        reason: Why no run started.
        missed_count: For ``missed``: how many slots.
        missed_until: For ``missed``: the last of them.
        created_at: When it was recorded.
        proto: The ``baton.v1.ScheduleFire`` message.
    """

    scheduled_for: datetime
    outcome: FireOutcome
    run_id: str | None
    cancelled_run_id: str | None
    reason: str
    missed_count: int
    missed_until: datetime | None
    created_at: datetime
    proto: schedules_pb2.ScheduleFire = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: schedules_pb2.ScheduleFire) -> ScheduleFire:
        """Build from the contract's message."""
        return cls(
            scheduled_for=to_datetime(message.scheduled_for),
            outcome=FireOutcome(schedules_pb2.ScheduleFire.Outcome.Name(message.outcome)),
            run_id=message.run_id or None,
            cancelled_run_id=message.cancelled_run_id or None,
            reason=message.reason,
            missed_count=message.missed_count,
            missed_until=optional_datetime(message, "missed_until"),
            created_at=to_datetime(message.created_at),
            proto=message,
        )


def _schedule_id(schedule: str | Schedule) -> str:
    return schedule.id if isinstance(schedule, Schedule) else schedule


def _timing(
    request: Any,
    *,
    cron_expression: str | None,
    every: tuple[int, IntervalUnit | str] | None,
    at: datetime | None,
    timezone: str | None,
) -> None:
    """Set the timing fields given on a create or update request."""
    if cron_expression is not None:
        request.schedule_type = _Proto.cron
        request.cron_expression = cron_expression
    if every is not None:
        request.schedule_type = _Proto.interval
        request.interval_value = every[0]
        request.interval_unit = _Proto.IntervalUnit.Value(IntervalUnit(every[1]).value)
    if at is not None:
        request.schedule_type = _Proto.fixed_time
        request.execution_time.CopyFrom(to_timestamp(at))
    if timezone is not None:
        request.timezone = timezone


class Schedules:
    """Schedules of workflows. Reached as ``client.schedules``.

    Give exactly one of ``cron_expression``, ``every`` (``(30, "minutes")``) or ``at``
    (an aware datetime) to choose the schedule type.
    """

    def __init__(self, transport: Transport, runs: Runs) -> None:
        """Bind to a client's transport; use ``client.schedules`` instead."""
        self._transport = transport
        self._runs = runs
        self._stub = schedules_pb2_grpc.ScheduleServiceStub(transport.channel)

    async def create(
        self,
        workflow: str | Workflow,
        *,
        name: str,
        cron_expression: str | None = None,
        every: tuple[int, IntervalUnit | str] | None = None,
        at: datetime | None = None,
        timezone: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        description: str = "",
        enabled: bool = True,
        overlap_policy: OverlapPolicy | str | None = None,
        catchup_window_seconds: int | None = None,
        timeout: float | None = None,
    ) -> Schedule:
        """Schedule runs of ``workflow`` (its id or the workflow).

        Raises:
            InvalidArgumentError: Reason ``INVALID_SCHEDULE``, naming the field (a bad
                cron expression, time zone, interval, or a time in the past).
            NotFoundError: No workflow has this id.
        """
        request = schedules_pb2.CreateScheduleRequest(
            workflow_id=workflow.id if isinstance(workflow, Workflow) else workflow,
            name=name,
            description=description,
            parameters=to_struct(parameters or {}),
            enabled=enabled,
        )
        _timing(request, cron_expression=cron_expression, every=every, at=at, timezone=timezone)
        if overlap_policy is not None:
            request.overlap_policy = _Proto.OverlapPolicy.Value(OverlapPolicy(overlap_policy))
        if catchup_window_seconds is not None:
            request.catchup_window_seconds = catchup_window_seconds
        reply = await self._transport.unary(
            self._stub.CreateSchedule, request, timeout=timeout, idempotent=False
        )
        return Schedule.from_proto(reply)

    async def get(self, schedule: str | Schedule, *, timeout: float | None = None) -> Schedule:
        """One schedule, with its next fire times and last run."""
        reply = await self._transport.unary(
            self._stub.GetSchedule,
            schedules_pb2.GetScheduleRequest(schedule_id=_schedule_id(schedule)),
            timeout=timeout,
            idempotent=True,
        )
        return Schedule.from_proto(reply)

    def list(
        self,
        *,
        workflow: str | Workflow | None = None,
        enabled: bool | None = None,
        page_size: int = 100,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncPager[Schedule]:
        """The project's schedules, newest first, optionally of one workflow or only
        enabled (or disabled) ones."""
        workflow_id = workflow.id if isinstance(workflow, Workflow) else (workflow or "")

        def request(number: int) -> schedules_pb2.ListSchedulesRequest:
            message = schedules_pb2.ListSchedulesRequest(
                workflow_id=workflow_id, page=number, page_size=page_size
            )
            if enabled is not None:
                message.enabled = enabled
            return message

        return rpc_listing(
            self._transport,
            self._stub.ListSchedules,
            request,
            Schedule.from_proto,
            lambda schedule: schedule.id,
            limit=limit,
            timeout=timeout,
        )

    async def update(
        self,
        schedule: str | Schedule,
        *,
        name: str | None = None,
        description: str | None = None,
        cron_expression: str | None = None,
        every: tuple[int, IntervalUnit | str] | None = None,
        at: datetime | None = None,
        timezone: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        enabled: bool | None = None,
        overlap_policy: OverlapPolicy | str | None = None,
        catchup_window_seconds: int | None = None,
        timeout: float | None = None,
    ) -> Schedule:
        """Change the fields given. A new timing (``cron_expression``, ``every``,
        ``at``, ``timezone``) or enabling counts the next fire time afresh from now."""
        request = schedules_pb2.UpdateScheduleRequest(schedule_id=_schedule_id(schedule))
        _timing(request, cron_expression=cron_expression, every=every, at=at, timezone=timezone)
        for name_, value in (
            ("name", name),
            ("description", description),
            ("enabled", enabled),
            ("catchup_window_seconds", catchup_window_seconds),
        ):
            if value is not None:
                setattr(request, name_, value)
        if parameters is not None:
            request.parameters.CopyFrom(to_struct(parameters))
        if overlap_policy is not None:
            request.overlap_policy = _Proto.OverlapPolicy.Value(OverlapPolicy(overlap_policy))
        reply = await self._transport.unary(
            self._stub.UpdateSchedule, request, timeout=timeout, idempotent=True
        )
        return Schedule.from_proto(reply)

    async def delete(self, schedule: str | Schedule, *, timeout: float | None = None) -> None:
        """Delete a schedule: it fires no more (its runs are kept)."""
        await self._transport.unary(
            self._stub.DeleteSchedule,
            schedules_pb2.DeleteScheduleRequest(schedule_id=_schedule_id(schedule)),
            timeout=timeout,
            idempotent=True,
        )

    async def trigger(
        self,
        schedule: str | Schedule,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Start a run now with the schedule's parameters (its next fire time stays).

        Raises:
            WorkflowNotActiveError: The workflow is inactive or deleted.
        """
        reply = await self._transport.unary(
            self._stub.TriggerSchedule,
            schedules_pb2.TriggerScheduleRequest(
                schedule_id=_schedule_id(schedule), request_id=request_id or ""
            ),
            timeout=timeout,
            idempotent=bool(request_id),
        )
        return Run(**RunData.fields_from_proto(reply), _runs=self._runs)

    def fires(
        self,
        schedule: str | Schedule,
        *,
        outcome: FireOutcome | str | None = None,
        page_size: int = 100,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncPager[ScheduleFire]:
        """What the schedule did with its slots, newest first."""
        outcome_value = schedules_pb2.ScheduleFire.Outcome.Value(
            FireOutcome(outcome).value if outcome else "OUTCOME_UNSPECIFIED"
        )
        schedule_id = _schedule_id(schedule)
        return rpc_listing(
            self._transport,
            self._stub.ListScheduleFires,
            lambda number: schedules_pb2.ListScheduleFiresRequest(
                schedule_id=schedule_id, outcome=outcome_value, page=number, page_size=page_size
            ),
            ScheduleFire.from_proto,
            lambda fire: (fire.scheduled_for, fire.outcome, fire.created_at),
            limit=limit,
            timeout=timeout,
        )
