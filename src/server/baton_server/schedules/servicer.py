"""``baton.v1.ScheduleService``: proto <-> domain only; the service does the work."""

from __future__ import annotations

from typing import Any

import grpc

from baton.v1 import runs_pb2, schedules_pb2, schedules_pb2_grpc
from baton_server.access.context import caller
from baton_server.rpc.convert import (
    dict_to_struct,
    filter_uuid,
    optional_datetime,
    page_fields,
    page_request,
    parse_uuid,
    present,
    struct_to_dict,
    timestamp,
)
from baton_server.runs.service import DEFAULT_ACTOR
from baton_server.runs.servicer import run_to_proto
from baton_server.schedules.model import Schedule, ScheduleChanges, ScheduleFire, TimingSpec
from baton_server.schedules.service import ScheduleService

_Context = grpc.aio.ServicerContext[Any, Any]
_Proto = schedules_pb2.Schedule
_Outcome = schedules_pb2.ScheduleFire.Outcome


def _enum_name(enum: Any, value: int) -> str | None:
    """A request's enum as its REST value; None when unset (the zero value)."""
    return str(enum.Name(value)) if value else None


def schedule_to_proto(schedule: Schedule) -> schedules_pb2.Schedule:
    state, reason = schedule.state
    message = schedules_pb2.Schedule(
        id=str(schedule.id),
        workflow_id=str(schedule.workflow_id),
        workflow_name=schedule.workflow_name,
        name=schedule.name,
        description=schedule.description,
        schedule_type=_Proto.ScheduleType.Value(schedule.schedule_type),
        cron_expression=schedule.cron_expression,
        interval_value=schedule.interval_value,
        parameters=dict_to_struct(schedule.parameters),
        enabled=schedule.enabled,
        timezone=schedule.timezone,
        upcoming_executions=[timestamp(t) for t in schedule.upcoming()],
        overlap_policy=_Proto.OverlapPolicy.Value(schedule.overlap_policy),
        catchup_window_seconds=schedule.catchup_window_s,
        state=_Proto.State.Value(state),
        state_reason=reason,
        missed_executions=schedule.missed_count,
        skipped_executions=schedule.skipped_count,
        created_by=schedule.created_by,
        created_at=timestamp(schedule.created_at),
        updated_at=timestamp(schedule.updated_at),
        project_id=str(schedule.project_id),
    )
    if schedule.interval_unit is not None:
        message.interval_unit = _Proto.IntervalUnit.Value(schedule.interval_unit)
    if schedule.execution_time:
        message.execution_time.CopyFrom(timestamp(schedule.execution_time))
    if state == "scheduled" and schedule.next_fire_at:
        message.next_execution.CopyFrom(timestamp(schedule.next_fire_at))
    if schedule.last_run_id and schedule.last_run_status and schedule.last_run_started_at:
        last = message.last_execution
        last.execution_id = schedule.last_run_id
        last.status = runs_pb2.Run.Status.Value(schedule.last_run_status)
        last.started_at.CopyFrom(timestamp(schedule.last_run_started_at))
        if schedule.last_run_completed_at:
            last.completed_at.CopyFrom(timestamp(schedule.last_run_completed_at))
        if schedule.last_slot_at:
            last.scheduled_for.CopyFrom(timestamp(schedule.last_slot_at))
    return message


def fire_to_proto(fire: ScheduleFire) -> schedules_pb2.ScheduleFire:
    message = schedules_pb2.ScheduleFire(
        scheduled_for=timestamp(fire.scheduled_for),
        outcome=_Outcome.Value(fire.outcome),
        run_id=fire.run_id or "",
        cancelled_run_id=fire.cancelled_run_id or "",
        reason=fire.reason or "",
        missed_count=fire.missed_count or 0,
        created_at=timestamp(fire.created_at),
    )
    if fire.missed_until:
        message.missed_until.CopyFrom(timestamp(fire.missed_until))
    return message


def _timing(request: Any, *, update: bool) -> TimingSpec:
    """The timing fields a create or update request gives."""
    return TimingSpec(
        schedule_type=_enum_name(_Proto.ScheduleType, request.schedule_type),
        cron_expression=present(request, "cron_expression")
        if update
        else (request.cron_expression or None),
        interval_value=present(request, "interval_value")
        if update
        else (request.interval_value or None),
        interval_unit=_enum_name(_Proto.IntervalUnit, request.interval_unit),
        execution_time=optional_datetime(request, "execution_time"),
        timezone=present(request, "timezone") if update else (request.timezone or None),
    )


def _actor() -> str:
    identity = caller()
    return DEFAULT_ACTOR if identity.anonymous else identity.name


class ScheduleServicer(schedules_pb2_grpc.ScheduleServiceServicer):
    """Translates ScheduleService RPCs to ``ScheduleService`` use cases."""

    def __init__(self, service: ScheduleService) -> None:
        self._service = service

    async def CreateSchedule(
        self, request: schedules_pb2.CreateScheduleRequest, context: _Context
    ) -> schedules_pb2.Schedule:
        schedule = await self._service.create(
            caller().project_id,
            parse_uuid(request.workflow_id, "workflow_id"),
            name=request.name,
            description=request.description,
            timing=_timing(request, update=False),
            parameters=struct_to_dict(request.parameters),
            enabled=request.enabled if request.HasField("enabled") else True,
            overlap_policy=_enum_name(_Proto.OverlapPolicy, request.overlap_policy),
            catchup_window_s=present(request, "catchup_window_seconds"),
            created_by=_actor(),
        )
        return schedule_to_proto(schedule)

    async def ListSchedules(
        self, request: schedules_pb2.ListSchedulesRequest, context: _Context
    ) -> schedules_pb2.ListSchedulesResponse:
        page = await self._service.list_page(
            caller().project_id,
            workflow_id=filter_uuid(request.workflow_id),
            enabled=present(request, "enabled"),
            page=page_request(request),
        )
        return schedules_pb2.ListSchedulesResponse(
            items=[schedule_to_proto(s) for s in page.items], **page_fields(page)
        )

    async def GetSchedule(
        self, request: schedules_pb2.GetScheduleRequest, context: _Context
    ) -> schedules_pb2.Schedule:
        schedule = await self._service.get(
            caller().project_id, parse_uuid(request.schedule_id, "schedule_id")
        )
        return schedule_to_proto(schedule)

    async def UpdateSchedule(
        self, request: schedules_pb2.UpdateScheduleRequest, context: _Context
    ) -> schedules_pb2.Schedule:
        changes = ScheduleChanges(
            timing=_timing(request, update=True),
            name=present(request, "name"),
            description=present(request, "description"),
            parameters=struct_to_dict(request.parameters)
            if request.HasField("parameters")
            else None,
            enabled=present(request, "enabled"),
            overlap_policy=_enum_name(_Proto.OverlapPolicy, request.overlap_policy),
            catchup_window_s=present(request, "catchup_window_seconds"),
        )
        schedule = await self._service.update(
            caller().project_id, parse_uuid(request.schedule_id, "schedule_id"), changes
        )
        return schedule_to_proto(schedule)

    async def DeleteSchedule(
        self, request: schedules_pb2.DeleteScheduleRequest, context: _Context
    ) -> schedules_pb2.DeleteScheduleResponse:
        schedule_id = parse_uuid(request.schedule_id, "schedule_id")
        await self._service.delete(caller().project_id, schedule_id)
        return schedules_pb2.DeleteScheduleResponse(id=str(schedule_id), deleted=True)

    async def TriggerSchedule(
        self, request: schedules_pb2.TriggerScheduleRequest, context: _Context
    ) -> runs_pb2.Run:
        run = await self._service.trigger(
            caller().project_id,
            parse_uuid(request.schedule_id, "schedule_id"),
            request_id=request.request_id or None,
            actor=_actor(),
        )
        return run_to_proto(run)

    async def ListScheduleFires(
        self, request: schedules_pb2.ListScheduleFiresRequest, context: _Context
    ) -> schedules_pb2.ListScheduleFiresResponse:
        page = await self._service.fires(
            caller().project_id,
            parse_uuid(request.schedule_id, "schedule_id"),
            _enum_name(_Outcome, request.outcome),
            page_request(request),
        )
        return schedules_pb2.ListScheduleFiresResponse(
            items=[fire_to_proto(f) for f in page.items], **page_fields(page)
        )
