"""``baton.v1.RunService``: proto <-> domain only; the service does the work."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2, json_format

from baton.v1 import runs_pb2, runs_pb2_grpc
from baton_server.access.context import answer_with_status, caller
from baton_server.errors import BatonError
from baton_server.paging import Sort
from baton_server.rpc.convert import (
    dict_to_struct,
    filter_uuid,
    integral,
    json_value,
    optional_datetime,
    page_fields,
    page_request,
    parse_uuid,
    present,
    struct_to_dict,
    timestamp,
)
from baton_server.runs.events import is_terminal
from baton_server.runs.model import TERMINAL_RUN_STATUSES, Run, RunEvent, RunStep
from baton_server.runs.service import RunService
from baton_server.runs.watch import Lagged, Snapshot, WatchService
from baton_server.usage.model import AiCall
from baton_server.usage.servicer import (
    ai_call_to_proto,
    models_of,
    step_usage,
    token_usage_to_proto,
    totals_to_proto,
)
from baton_server.webhooks.service import WebhookService

log = logging.getLogger(__name__)
_Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_LOG_LIMIT = 1000
DEFAULT_WAIT_S = 60.0


def _actor(claimed: str) -> str | None:
    """Who a run records as starting or cancelling it: the authenticated caller, or
    what an anonymous caller says (None: the default)."""
    identity = caller()
    return (claimed or None) if identity.anonymous else identity.name


def _seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _wait_seconds(request: runs_pb2.ExecuteWorkflowRequest) -> float | None:
    """How long ExecuteWorkflow waits for the run to finish (None: not at all)."""
    if request.HasField("wait_timeout"):
        return _seconds(request.wait_timeout)
    options = request.execution_options
    if options.wait_for_completion:
        return float(min(present(options, "timeout_seconds") or 60, 300))
    return None


def run_to_proto(
    run: Run,
    callback_secret: str | None = None,
    *,
    calls: Sequence[AiCall] | None = None,
    models: Mapping[str, tuple[int, int]] | None = None,
) -> runs_pb2.Run:
    """The run; with its AI ``calls`` (oldest first), also those and its tokens by model,
    else with ``models``, its tokens by model."""
    if calls is not None:
        models = models_of(calls)
    message = runs_pb2.Run(
        id=run.id,
        run_id=run.id,
        workflow_id=str(run.workflow_id),
        workflow_name=run.workflow_name,
        workflow_definition_id=str(run.definition_id),
        status=runs_pb2.Run.Status.Value(run.status),
        input_data=dict_to_struct(run.input_data),
        triggered_by=run.triggered_by,
        created_at=timestamp(run.created_at),
        updated_at=timestamp(run.updated_at),
        cancelled_by=run.cancelled_by,
        error_message=run.error_message,
        workflow_version=run.workflow_version,
        progress=run.progress,
        request_id=run.request_id or "",
        project_id=str(run.project_id),
        callback_url=run.callback_url or "",
        callback_secret=callback_secret or "",
        token_usage=token_usage_to_proto(run.tokens_input, run.tokens_output, models or {}),
        total_cost=run.total_cost,
        ai_calls=[ai_call_to_proto(c) for c in calls or ()],
    )
    if run.completed_at:
        message.completed_at.CopyFrom(timestamp(run.completed_at))
    if run.cancelled_at:
        message.cancelled_at.CopyFrom(timestamp(run.cancelled_at))
    ended = run.completed_at or run.cancelled_at
    if ended:
        message.duration_ms = _milliseconds(ended - run.created_at)
    if run.deadline_at:
        message.timeout_seconds = run.timeout_seconds or 0
        message.deadline.CopyFrom(timestamp(run.deadline_at))
    if run.output is not None:
        message.output.CopyFrom(json_value(run.output))
    return message


def step_to_proto(step: RunStep, calls: Sequence[AiCall] = ()) -> runs_pb2.RunStep:
    """The step, with the AI calls among ``calls`` that it made."""
    mine = [c for c in calls if c.step_id == step.step_id]
    message = runs_pb2.RunStep(
        id=step.id,
        run_id=step.run_id,
        step_id=step.step_id,
        step_name=step.step_id,
        agent_name=step.agent_name,
        status=runs_pb2.RunStep.Status.Value(step.status),
        error_message=step.error_message,
        attempt=step.attempt,
        parent_step_id=step.parent_step_id or "",
        item_index=step.item_index,
        **step_usage(mine),
    )
    if step.input_data is not None:
        message.input_data.CopyFrom(dict_to_struct(step.input_data))
    if step.output_data is not None:
        message.output_data.CopyFrom(json_value(step.output_data))
    if step.started_at:
        message.started_at.CopyFrom(timestamp(step.started_at))
    if step.completed_at:
        message.completed_at.CopyFrom(timestamp(step.completed_at))
        if step.started_at:
            message.duration_ms = _milliseconds(step.completed_at - step.started_at)
    return message


def _milliseconds(elapsed: timedelta) -> float:
    return float(max(round(elapsed.total_seconds() * 1000), 0))


def log_to_proto(event: RunEvent) -> runs_pb2.RunLog:
    return runs_pb2.RunLog(
        sequence=event.sequence,
        step_id=event.step_id or "",
        level=runs_pb2.RunLog.Level.Value(event.level or "info"),
        message=event.message or "",
        timestamp=timestamp(event.created_at),
    )


_EVENT_TYPES = runs_pb2.RunEvent.Type


def event_to_proto(event: RunEvent, *, terminal: bool = False) -> runs_pb2.RunEvent:
    data = event.data or {}
    message = runs_pb2.RunEvent(
        run_id=event.run_id,
        sequence=event.sequence,
        type=_EVENT_TYPES.Value(event.type),
        timestamp=timestamp(event.created_at),
        step_id=event.step_id or "",
        status=runs_pb2.Run.Status.Value(data.get("status", "STATUS_UNSPECIFIED")),
        progress=data.get("progress", 0),
        attempt=data.get("attempt", 0),
        error_message=data.get("error_message") or data.get("error") or "",
        delay_ms=data.get("delay_ms", 0),
        level=runs_pb2.RunLog.Level.Value(event.level or "LEVEL_UNSPECIFIED"),
        message=event.message or "",
        terminal=terminal,
    )
    if "output" in data:
        message.output.CopyFrom(json_value(data["output"]))
    if "usage" in data:
        message.usage.CopyFrom(totals_to_proto(data["usage"]))
        message.run_usage.CopyFrom(totals_to_proto(data.get("run_usage", {})))
    return message


def snapshot_to_proto(snapshot: Snapshot) -> runs_pb2.RunEvent:
    run = snapshot.run
    return runs_pb2.RunEvent(
        run_id=run.id,
        sequence=snapshot.sequence,
        type=_EVENT_TYPES.state_sync,
        timestamp=timestamp(run.updated_at),
        status=runs_pb2.Run.Status.Value(run.status),
        progress=run.progress,
        error_message=run.error_message or "",
        run=run_to_proto(run, calls=snapshot.calls),
        steps=[step_to_proto(s, snapshot.calls) for s in snapshot.steps],
        terminal=run.status in TERMINAL_RUN_STATUSES,
    )


class _EventMessages:
    """Recently converted events: a run watched by many converts each event once."""

    def __init__(self, capacity: int = 4096) -> None:
        self._messages: OrderedDict[tuple[str, int], runs_pb2.RunEvent] = OrderedDict()
        self._capacity = capacity

    def get(self, event: RunEvent) -> runs_pb2.RunEvent:
        key = (event.run_id, event.sequence)
        message = self._messages.get(key)
        if message is None:
            message = event_to_proto(event, terminal=is_terminal(event))
            self._messages[key] = message
            if len(self._messages) > self._capacity:
                self._messages.popitem(last=False)
        return message


class RunServicer(runs_pb2_grpc.RunServiceServicer):
    """Translates RunService RPCs to ``RunService`` use cases."""

    def __init__(
        self, service: RunService, watcher: WatchService, callbacks: WebhookService
    ) -> None:
        self._service = service
        self._watcher = watcher
        self._callbacks = callbacks
        self._event_messages = _EventMessages()

    async def _execute(
        self,
        workflow_id: str,
        input_data: dict[str, Any],
        *,
        request_id: str,
        triggered_by: str | None,
        callback_url: str,
        callback_secret: str,
        timeout_seconds: int | None = None,
    ) -> tuple[Run, str | None]:
        """Start a run; with a callback, also the secret Baton generated for it."""
        callback, generated = (
            await self._callbacks.callback(callback_url, callback_secret or None)
            if callback_url
            else (None, None)
        )
        run, started = await self._service.execute(
            caller().project_id,
            parse_uuid(workflow_id, "workflow_id"),
            input_data,
            request_id=request_id or None,
            triggered_by=triggered_by,
            callback=callback,
            timeout_seconds=timeout_seconds,
        )
        # A repeated request (same request_id) gets the first run, whose callback keeps
        # the secret of the first request: a secret generated now would sign nothing.
        return run, generated if started else None

    async def ExecuteWorkflow(
        self, request: runs_pb2.ExecuteWorkflowRequest, context: _Context
    ) -> runs_pb2.Run:
        run, secret = await self._execute(
            request.workflow_id,
            struct_to_dict(request.input_data),
            request_id=request.request_id,
            triggered_by=_actor(request.triggered_by),
            callback_url=request.callback_url,
            callback_secret=request.callback_secret,
            timeout_seconds=present(request.execution_options, "timeout_seconds"),
        )
        wait_s = _wait_seconds(request)
        if wait_s is not None:
            run = await self._watcher.wait_run(
                caller().project_id, run.id, timeout_s=wait_s, known=run
            )
            if run.status in TERMINAL_RUN_STATUSES:
                answer_with_status(200)  # done: not 202 Accepted
                return await self._full(run, secret)
        return await self._full(run, secret)

    async def ExecuteWorkflowAsync(
        self, request: runs_pb2.ExecuteWorkflowAsyncRequest, context: _Context
    ) -> runs_pb2.Run:
        run, secret = await self._execute(
            request.workflow_id,
            struct_to_dict(request.parameters),
            request_id=request.request_id,
            triggered_by=None,
            callback_url=request.callback_url,
            callback_secret=request.callback_secret,
        )
        return run_to_proto(run, secret)

    async def ListRuns(
        self, request: runs_pb2.ListRunsRequest, context: _Context
    ) -> runs_pb2.ListRunsResponse:
        page = await self._service.list_page(
            caller().project_id,
            project_filter=filter_uuid(request.project_id),
            status=runs_pb2.Run.Status.Name(request.status) if request.status else None,
            workflow_id=request.workflow_id or None,
            definition_id=request.workflow_definition_id or None,
            created_after=optional_datetime(request, "created_after"),
            created_before=optional_datetime(request, "created_before"),
            min_total_cost=present(request, "min_total_cost"),
            max_total_cost=present(request, "max_total_cost"),
            sort=Sort.parse(request.sort_by, request.sort_order),
            page=page_request(request),
        )
        models = await self._service.models(page.items)
        return runs_pb2.ListRunsResponse(
            items=[run_to_proto(r, models=models.get(r.id)) for r in page.items],
            **page_fields(page),
        )

    async def _full(self, run: Run, callback_secret: str | None = None) -> runs_pb2.Run:
        """The run with its AI calls."""
        return run_to_proto(run, callback_secret, calls=await self._service.calls(run))

    async def GetRun(self, request: runs_pb2.GetRunRequest, context: _Context) -> runs_pb2.Run:
        return await self._full(await self._service.get(caller().project_id, request.run_id))

    async def WaitRun(self, request: runs_pb2.WaitRunRequest, context: _Context) -> runs_pb2.Run:
        timeout_s = _seconds(request.timeout) if request.HasField("timeout") else DEFAULT_WAIT_S
        run = await self._watcher.wait_run(caller().project_id, request.run_id, timeout_s=timeout_s)
        return await self._full(run)

    async def ListRunSteps(
        self, request: runs_pb2.ListRunStepsRequest, context: _Context
    ) -> runs_pb2.ListRunStepsResponse:
        steps, calls = await self._service.steps(caller().project_id, request.run_id)
        # REST returns the bare array: the Envoy Lua filter unwraps the named field.
        return runs_pb2.ListRunStepsResponse(steps=[step_to_proto(s, calls) for s in steps])

    async def RetryRun(self, request: runs_pb2.RetryRunRequest, context: _Context) -> runs_pb2.Run:
        run = await self._service.retry(caller().project_id, request.run_id)
        return run_to_proto(run)

    async def CancelRun(
        self, request: runs_pb2.CancelRunRequest, context: _Context
    ) -> runs_pb2.Run:
        run = await self._service.cancel(
            caller().project_id,
            request.run_id,
            reason=request.reason,
            cancelled_by=_actor(request.cancelled_by),
        )
        return run_to_proto(run)

    async def PauseRun(self, request: runs_pb2.PauseRunRequest, context: _Context) -> runs_pb2.Run:
        run = await self._service.pause(
            caller().project_id, request.run_id, reason=request.reason, paused_by=_actor("")
        )
        return run_to_proto(run)

    async def ResumeRun(
        self, request: runs_pb2.ResumeRunRequest, context: _Context
    ) -> runs_pb2.Run:
        run = await self._service.resume(caller().project_id, request.run_id, resumed_by=_actor(""))
        return run_to_proto(run)

    async def DeleteRun(
        self, request: runs_pb2.DeleteRunRequest, context: _Context
    ) -> runs_pb2.DeleteRunResponse:
        await self._service.delete(caller().project_id, request.run_id)
        return runs_pb2.DeleteRunResponse(
            run_id=request.run_id, deleted=True, message="Execution deleted successfully"
        )

    async def SignalRun(
        self, request: runs_pb2.SignalRunRequest, context: _Context
    ) -> runs_pb2.SignalRunResponse:
        duplicate, received_at = await self._service.signal(
            caller().project_id,
            request.run_id,
            request.name,
            integral(json_format.MessageToDict(request.payload))
            if request.HasField("payload")
            else None,
            sent_by=_actor(""),
        )
        return runs_pb2.SignalRunResponse(
            run_id=request.run_id,
            name=request.name,
            duplicate=duplicate,
            received_at=timestamp(received_at),
        )

    async def GetRunStep(
        self, request: runs_pb2.GetRunStepRequest, context: _Context
    ) -> runs_pb2.RunStep:
        step = await self._service.step(caller().project_id, request.run_id, request.step_id)
        return step_to_proto(step)

    async def GetRunLogs(
        self, request: runs_pb2.GetRunLogsRequest, context: _Context
    ) -> runs_pb2.GetRunLogsResponse:
        lines = await self._service.logs(
            caller().project_id,
            request.run_id,
            step_id=request.step_id or None,
            after_sequence=request.after_sequence,
            limit=present(request, "limit") or DEFAULT_LOG_LIMIT,
        )
        return runs_pb2.GetRunLogsResponse(
            run_id=request.run_id, logs=[log_to_proto(line) for line in lines]
        )

    async def WatchRun(
        self, request: runs_pb2.WatchRunRequest, context: _Context
    ) -> AsyncIterator[runs_pb2.RunEvent]:
        stream = self._watcher.watch_run(
            caller().project_id, request.run_id, after_sequence=request.after_sequence
        )
        sent = False
        try:
            async for item in stream:
                if isinstance(item, Snapshot):
                    yield snapshot_to_proto(item)
                else:
                    yield self._event_messages.get(item)
                sent = True
        except Exception as error:
            if not sent or isinstance(error, BatonError):
                raise
            # Once events flowed, an HTTP client can no longer see a status: say it in
            # a final event instead (gRPC clients see it too, then a normal end).
            log.warning("watch of %s ended early: %r", request.run_id, error)
            yield runs_pb2.RunEvent(
                run_id=request.run_id,
                type=_EVENT_TYPES.error,
                error_message="event stream failed; resume with after_sequence",
            )

    async def WatchRuns(
        self, request: runs_pb2.WatchRunsRequest, context: _Context
    ) -> AsyncIterator[runs_pb2.RunEvent]:
        statuses = {runs_pb2.Run.Status.Name(s) for s in request.statuses}
        async for item in self._watcher.watch_runs(
            caller().project_id, workflow_id=request.workflow_id or None, statuses=statuses
        ):
            if isinstance(item, Lagged):
                yield runs_pb2.RunEvent(
                    type=_EVENT_TYPES.lagged,
                    error_message="subscriber fell behind; subscribe again",
                )
                return
            event, run = item
            message = event_to_proto(event)
            message.run.CopyFrom(run_to_proto(run))
            yield message
