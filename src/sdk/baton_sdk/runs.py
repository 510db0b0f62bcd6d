"""``client.runs``: start runs, follow them live, wait for them, retry and cancel them."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

import grpc

from baton.v1 import runs_pb2, runs_pb2_grpc
from baton_sdk._convert import to_struct, to_timestamp, to_value
from baton_sdk._transport import Transport
from baton_sdk.errors import UnavailableError, WaitTimeoutError, error_from_rpc
from baton_sdk.models import (
    Run,
    RunData,
    RunEvent,
    RunLog,
    RunStatus,
    RunStep,
    Workflow,
)
from baton_sdk.paging import AsyncPager, Page, SortOrder, numbered_pages
from baton_sdk.workflows import workflow_id

log = logging.getLogger("baton_sdk")

RunSortField = Literal["created_at", "updated_at", "completed_at", "status"]
"""Fields runs can be sorted by."""

# A stream can break in these ways without anything being wrong with the request:
# the connection dropped or the server went away (UNAVAILABLE), or the server
# cancelled the call while shutting down (CANCELLED; a cancellation on our side
# surfaces as asyncio.CancelledError instead).
_RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
_LOG_PAGE_SIZE = 1000
# WaitRun waits 300 s at most per call; the call's deadline leaves the server time to
# answer after that.
_MAX_WAIT_S = 300.0
_WAIT_GRACE_S = 10.0


def _run_id(run: str | RunData) -> str:
    """Return the id of ``run`` (a run object or an id)."""
    return run.id if isinstance(run, RunData) else run


class _StreamBroken(Exception):
    """The server's stream failed in a way resuming can repair."""


class Runs:
    """Runs: executions of a workflow version. Reached as ``client.runs``."""

    def __init__(self, transport: Transport) -> None:
        """Bind to a client's transport; use ``client.runs`` instead."""
        self._transport = transport
        self._stub = runs_pb2_grpc.RunServiceStub(transport.channel)

    def _run(self, message: runs_pb2.Run) -> Run:
        return Run(**RunData.fields_from_proto(message), _runs=self)

    async def execute(
        self,
        workflow: str | Workflow,
        *,
        input_data: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        triggered_by: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
        callback_url: str | None = None,
        callback_secret: str | None = None,
        run_timeout_s: int | None = None,
    ) -> Run:
        """Start a run of a workflow's current version.

        Args:
            workflow: The workflow or its id.
            input_data: Input of the run, read by ``${workflow.input...}`` references.
            request_id: Idempotency key: starting the same workflow again with the same
                key returns the run the first call started. With a key the call is
                also retried when the server is briefly unreachable.
            triggered_by: Who starts the run (default ``system``).
            wait: Wait for the run to finish and return it finished.
            callback_url: POST the final run here when it ends (signed like webhooks).
            callback_secret: Secret to sign the callback with; without one the server
                generates it and returns it in ``Run.callback_secret``.
            run_timeout_s: The run's time limit (1-604800 s): it fails if it has not
                finished by then, whatever it is doing.
            timeout: Seconds the whole call may take, waiting included (default: the
                client's deadline to start the run; with ``wait``, no limit on the wait).

        Returns:
            The run: PENDING as started, or finished (COMPLETED, FAILED or CANCELLED)
            with ``wait=True``. A failed run is returned, not raised: check ``status``.

        Raises:
            WorkflowNotActiveError: The workflow is inactive or deleted.
            NotFoundError: No workflow has this id.
            WaitTimeoutError: With ``wait``, the run did not finish within ``timeout``
                (it goes on running).
        """
        started_at = time.monotonic()
        request = runs_pb2.ExecuteWorkflowRequest(
            workflow_id=workflow_id(workflow),
            input_data=to_struct(input_data or {}),
            request_id=request_id or "",
            triggered_by=triggered_by or "",
            callback_url=callback_url or "",
            callback_secret=callback_secret or "",
            execution_options=runs_pb2.ExecutionOptions(timeout_seconds=run_timeout_s),
        )
        rpc_timeout = timeout if timeout is None else min(timeout, self._transport.timeout)
        wait_s = _MAX_WAIT_S if timeout is None else min(timeout, _MAX_WAIT_S)
        if wait and wait_s > 0:
            # Started and awaited in one call; longer waits go on with WaitRun.
            request.wait_timeout.FromNanoseconds(int(wait_s * 1e9))
            rpc_timeout = wait_s + _WAIT_GRACE_S
        reply = await self._transport.unary(
            self._stub.ExecuteWorkflow,
            request,
            timeout=rpc_timeout,
            idempotent=bool(request_id),
        )
        run = self._run(reply)
        if not wait or run.status.is_terminal:
            return run
        remaining = None if timeout is None else timeout - (time.monotonic() - started_at)
        return await self._wait(run.id, timeout, remaining, run.status)

    def list(
        self,
        *,
        workflow: str | Workflow | None = None,
        status: RunStatus | None = None,
        workflow_definition_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        sort_by: RunSortField | None = None,
        sort_order: SortOrder | None = None,
        page_size: int = 20,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncPager[Run]:
        """List runs, newest first by default.

        Args:
            workflow: Only runs of this workflow (or workflow id).
            status: Only runs with this status.
            workflow_definition_id: Only runs of this workflow version.
            created_after: Only runs created at or after this time.
            created_before: Only runs created before this time.
            sort_by: ``created_at`` (default), ``updated_at``, ``completed_at`` or
                ``status``.
            sort_order: ``asc`` or ``desc`` (default).
            page_size: Runs fetched per call, 1-100.
            limit: Stop after this many runs.
            timeout: Deadline of each page's call in seconds.

        Returns:
            An async iterable over the runs, fetching pages as needed.
        """
        request = runs_pb2.ListRunsRequest(
            page_size=min(page_size, limit) if limit else page_size,
            workflow_id=workflow_id(workflow) if workflow is not None else "",
            workflow_definition_id=workflow_definition_id or "",
            sort_by=sort_by or "",
            sort_order=sort_order or "",
        )
        if status is not None:
            request.status = runs_pb2.Run.Status.Value(RunStatus(status).value)
        if created_after is not None:
            request.created_after.CopyFrom(to_timestamp(created_after))
        if created_before is not None:
            request.created_before.CopyFrom(to_timestamp(created_before))

        async def fetch(number: int) -> Page[Run]:
            paged = runs_pb2.ListRunsRequest()
            paged.CopyFrom(request)
            paged.page = number
            reply = await self._transport.unary(
                self._stub.ListRuns, paged, timeout=timeout, idempotent=True
            )
            return Page(
                items=tuple(self._run(item) for item in reply.items),
                page=reply.page,
                page_size=reply.page_size,
                total=reply.total,
                total_pages=reply.total_pages,
            )

        return AsyncPager(lambda: numbered_pages(fetch), key=lambda r: r.id, limit=limit)

    async def get(self, run: str | RunData, *, timeout: float | None = None) -> Run:
        """Fetch a run's current state.

        Args:
            run: The run or its id.
            timeout: Deadline of this call in seconds.

        Returns:
            The run.

        Raises:
            NotFoundError: No run has this id (``RUN_NOT_FOUND``).
        """
        request = runs_pb2.GetRunRequest(run_id=_run_id(run))
        reply = await self._transport.unary(
            self._stub.GetRun, request, timeout=timeout, idempotent=True
        )
        return self._run(reply)

    async def steps(
        self, run: str | RunData, *, timeout: float | None = None
    ) -> builtins.list[RunStep]:
        """Fetch the steps of a run: started ones by start time, then the others.

        Args:
            run: The run or its id.
            timeout: Deadline of this call in seconds.

        Returns:
            The steps.

        Raises:
            NotFoundError: No run has this id.
        """
        request = runs_pb2.ListRunStepsRequest(run_id=_run_id(run))
        reply = await self._transport.unary(
            self._stub.ListRunSteps, request, timeout=timeout, idempotent=True
        )
        return [RunStep.from_proto(step) for step in reply.steps]

    def logs(
        self,
        run: str | RunData,
        *,
        step_id: str | None = None,
        after_sequence: int = 0,
        page_size: int = _LOG_PAGE_SIZE,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AsyncPager[RunLog]:
        """List the log of a run as it is now, oldest first.

        To keep reading lines as the run goes on, use :meth:`follow_logs`.

        Args:
            run: The run or its id.
            step_id: Only lines about this step.
            after_sequence: Only lines after this sequence number.
            page_size: Lines fetched per call, 1-1000.
            limit: Stop after this many lines.
            timeout: Deadline of each page's call in seconds.

        Returns:
            An async iterable over the lines, fetching pages as needed.
        """
        wanted = _run_id(run)
        size = min(page_size, limit) if limit else page_size

        async def pages() -> AsyncIterator[Page[RunLog]]:
            after, number = after_sequence, 1
            while True:
                request = runs_pb2.GetRunLogsRequest(
                    run_id=wanted, step_id=step_id or "", after_sequence=after, limit=size
                )
                reply = await self._transport.unary(
                    self._stub.GetRunLogs, request, timeout=timeout, idempotent=True
                )
                page = Page(
                    items=tuple(RunLog.from_proto(line) for line in reply.logs),
                    page=number,
                    page_size=size,
                )
                yield page
                if page.is_last:
                    return
                after, number = page.items[-1].sequence, number + 1

        return AsyncPager(pages, key=lambda line: line.sequence, limit=limit)

    async def follow_logs(
        self, run: str | RunData, *, step_id: str | None = None
    ) -> AsyncGenerator[RunLog, None]:
        """Yield the whole log of a run, then every new line live, until the run ends.

        Args:
            run: The run or its id.
            step_id: Only lines about this step.

        Yields:
            Log lines, oldest first, each exactly once.
        """
        wanted = _run_id(run)
        async with contextlib.aclosing(self.watch(wanted)) as events:
            # The snapshot comes first and tells up to which sequence the stored log
            # goes; the stream then continues right after it, so nothing is missed
            # or repeated even while the run writes lines.
            snapshot = await anext(events)
            async for line in self.logs(wanted, step_id=step_id):
                if line.sequence > snapshot.sequence:
                    break
                yield line
            async for event in events:
                if event.message and (step_id is None or event.step_id == step_id):
                    yield RunLog.from_event(event)

    async def retry(
        self, run: str | RunData, *, wait: bool = False, timeout: float | None = None
    ) -> Run:
        """Retry a FAILED or CANCELLED run from its first incomplete step.

        Completed steps are not run again.

        Args:
            run: The run or its id.
            wait: Wait for the retried run to finish and return it finished.
            timeout: Seconds the whole call may take, waiting included.

        Returns:
            The run, PENDING again (or finished, with ``wait``).

        Raises:
            FailedPreconditionError: The run is not FAILED or CANCELLED
                (``RUN_NOT_RETRYABLE``).
            NotFoundError: No run has this id.
            WaitTimeoutError: With ``wait``, the run did not finish in time.
        """
        started_at = time.monotonic()
        request = runs_pb2.RetryRunRequest(run_id=_run_id(run))
        rpc_timeout = timeout if timeout is None else min(timeout, self._transport.timeout)
        reply = await self._transport.unary(
            self._stub.RetryRun, request, timeout=rpc_timeout, idempotent=False
        )
        retried = self._run(reply)
        if not wait:
            return retried
        remaining = None if timeout is None else timeout - (time.monotonic() - started_at)
        return await self._wait(retried.id, timeout, remaining)

    async def cancel(
        self,
        run: str | RunData,
        *,
        reason: str = "",
        cancelled_by: str | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Cancel a PENDING, RUNNING or PAUSED run.

        No further step starts and the agent call in flight is abandoned; the run
        ends CANCELLED with ``error_message`` ``Cancelled: <reason>``.

        Args:
            run: The run or its id.
            reason: Why (at most 1000 characters).
            cancelled_by: Who cancels it (default ``system``).
            timeout: Deadline of this call in seconds.

        Returns:
            The cancelled run.

        Raises:
            FailedPreconditionError: The run already finished (``RUN_NOT_CANCELLABLE``).
            NotFoundError: No run has this id.
        """
        request = runs_pb2.CancelRunRequest(
            run_id=_run_id(run), reason=reason, cancelled_by=cancelled_by or ""
        )
        reply = await self._transport.unary(
            self._stub.CancelRun, request, timeout=timeout, idempotent=False
        )
        return self._run(reply)

    async def pause(
        self, run: str | RunData, *, reason: str = "", timeout: float | None = None
    ) -> Run:
        """Pause a PENDING or RUNNING run.

        Steps in flight finish and record their output; no new step starts until
        :meth:`resume`. A paused run holds no worker capacity once nothing is in flight.

        Args:
            run: The run or its id.
            reason: Why (at most 1000 characters); shown in the run's log.
            timeout: Deadline of this call in seconds.

        Returns:
            The run, PAUSED.

        Raises:
            FailedPreconditionError: The run is neither PENDING nor RUNNING
                (``RUN_NOT_PAUSABLE``).
            NotFoundError: No run has this id.
        """
        request = runs_pb2.PauseRunRequest(run_id=_run_id(run), reason=reason)
        reply = await self._transport.unary(
            self._stub.PauseRun, request, timeout=timeout, idempotent=False
        )
        return self._run(reply)

    async def resume(self, run: str | RunData, *, timeout: float | None = None) -> Run:
        """Resume a PAUSED run where it stopped.

        Args:
            run: The run or its id.
            timeout: Deadline of this call in seconds.

        Returns:
            The run: RUNNING if its worker was still finishing steps, else PENDING.

        Raises:
            FailedPreconditionError: The run is not PAUSED (``RUN_NOT_PAUSED``).
            NotFoundError: No run has this id.
        """
        request = runs_pb2.ResumeRunRequest(run_id=_run_id(run))
        reply = await self._transport.unary(
            self._stub.ResumeRun, request, timeout=timeout, idempotent=False
        )
        return self._run(reply)

    async def delete(self, run: str | RunData, *, timeout: float | None = None) -> None:
        """Permanently delete a finished run with its steps, events and logs.

        Args:
            run: The run or its id.
            timeout: Deadline of this call in seconds.

        Raises:
            FailedPreconditionError: The run has not finished (``RUN_NOT_FINISHED``):
                cancel it first.
            NotFoundError: No run has this id.
        """
        request = runs_pb2.DeleteRunRequest(run_id=_run_id(run))
        await self._transport.unary(
            self._stub.DeleteRun, request, timeout=timeout, idempotent=False
        )

    async def signal(
        self,
        run: str | RunData,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
    ) -> bool:
        """Send a named signal to a run: its wait step for ``name`` completes with
        ``payload`` as its output (a signal sent before the step waits is kept).

        Safe to repeat: a name counts once per run.

        Args:
            run: The run or its id.
            name: The signal's name (``Wait.signal``).
            payload: Any JSON value; the wait step's output.
            timeout: Deadline of this call in seconds.

        Returns:
            False for a new signal, True for a repeat (nothing changed).

        Raises:
            FailedPreconditionError: The run has finished (``RUN_FINISHED``).
            NotFoundError: No run has this id.
        """
        request = runs_pb2.SignalRunRequest(run_id=_run_id(run), name=name)
        if payload is not None:
            request.payload.CopyFrom(to_value(payload))
        reply = await self._transport.unary(
            self._stub.SignalRun, request, timeout=timeout, idempotent=True
        )
        return reply.duplicate

    async def step(
        self, run: str | RunData, step_id: str, *, timeout: float | None = None
    ) -> RunStep:
        """Fetch one step of a run, with its mapped input and its output.

        Args:
            run: The run or its id.
            step_id: Id of the step in the workflow.
            timeout: Deadline of this call in seconds.

        Returns:
            The step.

        Raises:
            NotFoundError: No run has this id, or the run no such step
                (``STEP_NOT_FOUND``).
        """
        request = runs_pb2.GetRunStepRequest(run_id=_run_id(run), step_id=step_id)
        reply = await self._transport.unary(
            self._stub.GetRunStep, request, timeout=timeout, idempotent=True
        )
        return RunStep.from_proto(reply)

    async def wait(self, run: str | RunData, *, timeout: float | None = None) -> Run:
        """Wait until a run finishes: the server answers as soon as it does (no polling).

        Args:
            run: The run or its id.
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            The finished run (COMPLETED, FAILED or CANCELLED). A failed run is
            returned, not raised: check ``status``.

        Raises:
            WaitTimeoutError: The run did not finish in time; it goes on running.
            NotFoundError: No run has this id.
        """
        return await self._wait(_run_id(run), timeout, timeout)

    async def _wait(
        self,
        wanted: str,
        timeout: float | None,
        remaining: float | None,
        last_status: RunStatus | None = None,
    ) -> Run:
        """``WaitRun`` calls, each as long as the server allows, until the run finishes."""
        loop = asyncio.get_running_loop()
        deadline = None if remaining is None else loop.time() + remaining
        while True:
            left = _MAX_WAIT_S if deadline is None else min(deadline - loop.time(), _MAX_WAIT_S)
            if left <= 0:
                raise WaitTimeoutError(wanted, timeout or 0.0, last_status)
            request = runs_pb2.WaitRunRequest(run_id=wanted)
            request.timeout.FromNanoseconds(int(left * 1e9))
            reply = await self._transport.unary(
                self._stub.WaitRun, request, timeout=left + _WAIT_GRACE_S, idempotent=True
            )
            run = self._run(reply)
            if run.status.is_terminal:
                return run
            last_status = run.status

    async def watch(
        self, run: str | RunData, *, after_sequence: int = 0, timeout: float | None = None
    ) -> AsyncGenerator[RunEvent, None]:
        """Stream a run's events live, until its terminal event.

        Without ``after_sequence`` the first event is a ``state_sync`` snapshot of
        the run and its steps; every later event follows in ``sequence`` order. If
        the connection drops (or the server restarts), the stream reconnects and
        resumes right after the last event received: no gap, no duplicate. It gives
        up after the client's ``RetryPolicy.stream_reconnect_timeout``.

        Args:
            run: The run or its id.
            after_sequence: Resume after this event instead (no snapshot).
            timeout: Give up when the run has not finished this many seconds after the
                watch began; ``None`` watches as long as it takes.

        Yields:
            Typed events; the last one has ``terminal=True``.

        Raises:
            NotFoundError: No run has this id.
            UnavailableError: The server stayed unreachable.
            WaitTimeoutError: The run did not finish within ``timeout``.
        """
        wanted = _run_id(run)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        last_status: RunStatus | None = None
        last = after_sequence
        policy = self._transport.retry
        failing_since: float | None = None
        reconnects = 0
        while True:
            request = runs_pb2.WatchRunRequest(run_id=wanted, after_sequence=last)
            call = self._stub.WatchRun(request, metadata=self._transport.metadata)
            messages = aiter(call)
            problem: str
            try:
                while True:
                    try:
                        # Only the wait for the next event counts against the deadline
                        # here; time spent by the caller between events is caught below.
                        async with asyncio.timeout_at(deadline):
                            message = await anext(messages)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise WaitTimeoutError(wanted, timeout or 0.0, last_status) from None
                    if message.type == runs_pb2.RunEvent.error:
                        raise _StreamBroken(message.error_message or "the stream failed")
                    if message.type != runs_pb2.RunEvent.state_sync and last:
                        if message.sequence <= last:
                            continue  # already delivered before a reconnect
                        if message.sequence != last + 1:
                            raise _StreamBroken(
                                f"event {last + 1} missing (got {message.sequence})"
                            )
                    last = message.sequence
                    failing_since, reconnects = None, 0
                    event = RunEvent.from_proto(message)
                    last_status = event.status or last_status
                    yield event
                    if message.terminal:
                        return
                    if deadline is not None and loop.time() >= deadline:
                        raise WaitTimeoutError(wanted, timeout or 0.0, last_status)
                # The contract ends a stream only after the terminal event - or at
                # once when resuming a run that had already finished. Check which.
                if (await self.get(wanted)).status.is_terminal:
                    return
                problem = "the stream ended before the run finished"
            except grpc.aio.AioRpcError as error:
                if error.code() not in _RESUMABLE:
                    raise error_from_rpc(error) from error
                problem = f"{error.code().name}: {error.details()}"
            except _StreamBroken as broken:
                problem = str(broken)
            finally:
                call.cancel()
            now = loop.time()
            failing_since = failing_since or now
            if now - failing_since >= policy.stream_reconnect_timeout:
                raise UnavailableError(
                    f"lost the event stream of run {wanted} and could not resume it"
                    f" within {policy.stream_reconnect_timeout:g}s ({problem})"
                )
            reconnects += 1
            delay = policy.backoff(reconnects)
            if deadline is not None and loop.time() + delay >= deadline:
                raise WaitTimeoutError(wanted, timeout or 0.0, last_status)
            log.info(
                "event stream of run %s interrupted (%s); resuming after event %d in %.2fs",
                wanted,
                problem,
                last,
                delay,
            )
            await asyncio.sleep(delay)

    async def watch_all(
        self,
        *,
        workflow: str | Workflow | None = None,
        statuses: Iterable[RunStatus] = (),
    ) -> AsyncGenerator[RunEvent, None]:
        """Stream the status changes of all runs (or of one workflow) as they happen.

        Each event is a ``run_status`` event with ``run`` set. There is no replay: a
        subscriber that falls too far behind receives a ``lagged`` event, then the
        stream ends (list runs to catch up, then watch again). A dropped connection
        raises :class:`UnavailableError` rather than silently missing events.

        Args:
            workflow: Only runs of this workflow (or workflow id).
            statuses: Only events whose new status is one of these.

        Yields:
            Typed events.

        Raises:
            UnavailableError: The connection dropped.
        """
        request = runs_pb2.WatchRunsRequest(
            workflow_id=workflow_id(workflow) if workflow is not None else "",
            statuses=[runs_pb2.Run.Status.Value(RunStatus(s).value) for s in statuses],
        )
        call = self._stub.WatchRuns(request, metadata=self._transport.metadata)
        try:
            async for message in call:
                yield RunEvent.from_proto(message)
                if message.type == runs_pb2.RunEvent.lagged:
                    return
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error) from error
        finally:
            call.cancel()
