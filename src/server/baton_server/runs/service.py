"""Run use cases of the API; each public method is one transaction.

Executing a run commits it (PENDING, with its steps) before it is put on the Redis
stream, so accepted work is never lost: if the enqueue fails or the process dies in
between, the reconciler finds the run in PostgreSQL and enqueues it.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from baton_server.errors import FailedPrecondition, NotFound
from baton_server.events.publisher import EventPublisher
from baton_server.paging import Page, PageRequest, Sort
from baton_server.runs import store
from baton_server.runs.dispatch import Dispatcher
from baton_server.runs.model import (
    PAUSED,
    PENDING,
    TERMINAL_RUN_STATUSES,
    Run,
    RunEvent,
    RunStep,
    new_run_id,
    new_step_execution_id,
)
from baton_server.runs.store import Connection
from baton_server.usage import store as usage_store
from baton_server.usage.model import AiCall
from baton_server.workflows.graph import StepGraph
from baton_server.workflows.service import workflow_not_found

DEFAULT_ACTOR = "system"


def run_not_found(run_id: str) -> NotFound:
    return NotFound(
        f"Run '{run_id}' not found", reason="RUN_NOT_FOUND", metadata={"run_id": run_id}
    )


#: A workflow version's id and the steps a run of it starts with (id and agent).
_Plan = tuple[uuid.UUID, list[tuple[str, str]]]


class _StepPlans:
    """The steps a run of each workflow's current version starts with, in graph order.

    Cached by workflow: a plan goes stale only when the workflow gets a new version,
    and starting a run checks the version it was planned for (``store.create``).
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._plans: OrderedDict[uuid.UUID, _Plan] = OrderedDict()
        self._capacity = capacity

    def cached(self, workflow_id: uuid.UUID) -> _Plan | None:
        return self._plans.get(workflow_id)

    async def load(
        self, conn: Connection, project_id: uuid.UUID, workflow_id: uuid.UUID
    ) -> _Plan | None:
        """The plan of the workflow's current version, read afresh (None: the project
        has no such workflow)."""
        found = await store.current_definition(conn, project_id, workflow_id)
        if found is None:
            return None
        definition_id, workflow_data = found
        steps = workflow_data["steps"]
        plan = (
            definition_id,
            [
                (step_id, steps[step_id]["agent_name"])
                for step_id in StepGraph.of(workflow_data).topological_order()
            ],
        )
        self._plans[workflow_id] = plan
        self._plans.move_to_end(workflow_id)
        if len(self._plans) > self._capacity:
            self._plans.popitem(last=False)
        return plan


class RunService:
    """Starts, lists, retries, pauses, resumes, cancels and deletes runs; the executor does
    the running."""

    def __init__(
        self, pool: asyncpg.Pool, dispatcher: Dispatcher, publisher: EventPublisher
    ) -> None:
        self._pool = pool
        self._dispatcher = dispatcher
        self._publisher = publisher
        self._plans = _StepPlans()

    def _publish(self, run: Run, written: list[RunEvent] | tuple[RunEvent, ...]) -> None:
        self._publisher.publish([(event, str(run.workflow_id)) for event in written])

    async def execute(
        self,
        project_id: uuid.UUID,
        workflow_id: uuid.UUID,
        input_data: dict[str, Any],
        *,
        request_id: str | None,
        triggered_by: str | None,
        callback: store.Callback | None = None,
        timeout_seconds: int | None = None,
    ) -> tuple[Run, bool]:
        """The run, and whether this call started it (False: the idempotency key's)."""
        async with self._pool.acquire() as conn:
            if request_id:
                existing = await store.find_by_request_id(conn, project_id, workflow_id, request_id)
                if existing:
                    return existing, False
            run, written = await self._create(
                conn,
                project_id,
                workflow_id,
                input_data,
                request_id,
                triggered_by or DEFAULT_ACTOR,
                callback,
                timeout_seconds,
            )
        await self.announce_started(run, written)
        return run, bool(written)

    async def start_in(
        self,
        conn: Connection,
        project_id: uuid.UUID,
        workflow_id: uuid.UUID,
        input_data: dict[str, Any],
        *,
        request_id: str | None,
        triggered_by: str,
    ) -> tuple[Run, tuple[RunEvent, ...]]:
        """Create a run in the caller's transaction (a schedule's fire); the caller
        calls :meth:`announce_started` once it has committed. No events: the
        idempotency key's run already existed."""
        return await self._create(
            conn, project_id, workflow_id, input_data, request_id, triggered_by, None, None
        )

    async def announce_started(self, run: Run, written: tuple[RunEvent, ...]) -> None:
        """Publish a committed new run's events and put it on the stream (nothing for a
        run an idempotency key found)."""
        if written:
            self._publish(run, written)
            await self._dispatcher.enqueue([run.id])

    async def _create(
        self,
        conn: Connection,
        project_id: uuid.UUID,
        workflow_id: uuid.UUID,
        input_data: dict[str, Any],
        request_id: str | None,
        triggered_by: str,
        callback: store.Callback | None,
        timeout_seconds: int | None,
    ) -> tuple[Run, tuple[RunEvent, ...]]:
        """The new run and its first events, or the run an idempotency key already
        started (and no events)."""
        planned = self._plans.cached(workflow_id) or await self._plans.load(
            conn, project_id, workflow_id
        )
        if planned is None:
            raise workflow_not_found(workflow_id)
        while True:
            definition_id, plan = planned
            run_id = new_run_id()
            created = await store.create(
                conn,
                project_id=project_id,
                run_id=run_id,
                workflow_id=workflow_id,
                definition_id=definition_id,
                steps=[
                    store.PlannedStep(new_step_execution_id(), step_id, agent_name)
                    for step_id, agent_name in plan
                ],
                input_data=input_data,
                triggered_by=triggered_by,
                request_id=request_id,
                callback=callback,
                timeout_seconds=timeout_seconds,
            )
            if created.run is not None:
                return created.run, created.written
            status = created.workflow_status
            if status is None:
                raise workflow_not_found(workflow_id)
            if status != "active":
                raise FailedPrecondition(
                    f"Workflow '{workflow_id}' is {status}; only active workflows run",
                    reason="WORKFLOW_NOT_ACTIVE",
                    metadata={"workflow_id": str(workflow_id), "status": status},
                )
            if created.current_definition_id == definition_id:
                # Active and at the planned version: the idempotency key was used
                # meanwhile by a concurrent request, which won.
                assert request_id is not None
                existing = await store.find_by_request_id(conn, project_id, workflow_id, request_id)
                assert existing is not None
                return existing, ()
            # The workflow changed version since its steps were planned.
            planned = await self._plans.load(conn, project_id, workflow_id)
            if planned is None:
                raise workflow_not_found(workflow_id)

    async def get(self, project_id: uuid.UUID, run_id: str) -> Run:
        async with self._pool.acquire() as conn:
            return await self._require(conn, project_id, run_id)

    async def list_page(
        self,
        project_id: uuid.UUID,
        *,
        project_filter: uuid.UUID | None,
        status: str | None,
        workflow_id: str | None,
        definition_id: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
        min_total_cost: float | None = None,
        max_total_cost: float | None = None,
        sort: Sort,
        page: PageRequest,
    ) -> Page[Run]:
        async with self._pool.acquire() as conn:
            return await store.list_page(
                conn,
                project_id,
                project_filter=project_filter,
                status=status,
                workflow_id=workflow_id,
                definition_id=definition_id,
                created_after=created_after,
                created_before=created_before,
                min_total_cost=min_total_cost,
                max_total_cost=max_total_cost,
                sort=sort,
                page=page,
            )

    async def steps(self, project_id: uuid.UUID, run_id: str) -> tuple[list[RunStep], list[AiCall]]:
        """The run's steps, and its AI calls (oldest first)."""
        async with self._pool.acquire() as conn:
            run = await self._require(conn, project_id, run_id)
            steps = await store.list_steps(conn, run_id)
            calls = await usage_store.calls_of_runs(conn, [run_id]) if run.has_usage else {}
        return steps, calls.get(run_id, [])

    async def calls(self, run: Run) -> list[AiCall]:
        """The run's AI calls, oldest first."""
        if not run.has_usage:
            return []
        async with self._pool.acquire() as conn:
            return (await usage_store.calls_of_runs(conn, [run.id]))[run.id]

    async def models(self, runs: Sequence[Run]) -> dict[str, dict[str, tuple[int, int]]]:
        """The input and output tokens of each of the runs by model (runs without usage
        are left out)."""
        used = [run.id for run in runs if run.has_usage]
        if not used:
            return {}
        async with self._pool.acquire() as conn:
            return await usage_store.models_of_runs(conn, used)

    async def logs(
        self,
        project_id: uuid.UUID,
        run_id: str,
        *,
        step_id: str | None,
        after_sequence: int,
        limit: int,
    ) -> list[RunEvent]:
        async with self._pool.acquire() as conn:
            await self._require(conn, project_id, run_id)
            return await store.list_events(
                conn,
                run_id,
                after_sequence=after_sequence,
                limit=limit,
                log_lines=True,
                step_id=step_id,
            )

    async def cancel(
        self, project_id: uuid.UUID, run_id: str, *, reason: str, cancelled_by: str | None
    ) -> Run:
        async with self._pool.acquire() as conn, conn.transaction():
            cancelled = await self.cancel_in(
                conn, project_id, run_id, reason=reason, cancelled_by=cancelled_by
            )
            if cancelled is None:
                raise await self._not_in(
                    conn,
                    project_id,
                    run_id,
                    "PENDING, RUNNING or PAUSED",
                    "cancelled",
                    "RUN_NOT_CANCELLABLE",
                )
        await self.announce_cancelled(*cancelled)
        return cancelled[0]

    @staticmethod
    async def cancel_in(
        conn: Connection,
        project_id: uuid.UUID,
        run_id: str,
        *,
        reason: str,
        cancelled_by: str | None,
    ) -> tuple[Run, list[RunEvent]] | None:
        """Cancel a PENDING or RUNNING run in the caller's transaction (None: it is
        neither, or unknown); the caller calls :meth:`announce_cancelled` once it has
        committed."""
        return await store.cancel(
            conn,
            project_id,
            run_id,
            reason=reason or "no reason given",
            cancelled_by=cancelled_by or DEFAULT_ACTOR,
        )

    async def announce_cancelled(self, run: Run, written: list[RunEvent]) -> None:
        """Publish a committed cancellation and stop the worker driving the run."""
        self._publish(run, written)
        await self._dispatcher.broadcast_cancel(run.id)

    async def retry(self, project_id: uuid.UUID, run_id: str) -> Run:
        async with self._pool.acquire() as conn, conn.transaction():
            reset = await store.reset_for_retry(conn, project_id, run_id)
            if reset is None:
                raise await self._not_in(
                    conn, project_id, run_id, "FAILED or CANCELLED", "retried", "RUN_NOT_RETRYABLE"
                )
        run, written = reset
        self._publish(run, written)
        await self._dispatcher.enqueue([run.id])
        return run

    async def pause(
        self, project_id: uuid.UUID, run_id: str, *, reason: str, paused_by: str | None
    ) -> Run:
        async with self._pool.acquire() as conn, conn.transaction():
            paused = await store.pause(
                conn,
                project_id,
                run_id,
                reason=reason or "no reason given",
                paused_by=paused_by or DEFAULT_ACTOR,
            )
            if paused is None:
                raise await self._not_in(
                    conn, project_id, run_id, "PENDING or RUNNING", "paused", "RUN_NOT_PAUSABLE"
                )
        run, written = paused
        self._publish(run, written)
        return run

    async def resume(self, project_id: uuid.UUID, run_id: str, *, resumed_by: str | None) -> Run:
        async with self._pool.acquire() as conn, conn.transaction():
            resumed = await store.resume(
                conn, project_id, run_id, resumed_by=resumed_by or DEFAULT_ACTOR
            )
            if resumed is None:
                raise await self._not_in(
                    conn, project_id, run_id, "PAUSED", "resumed", "RUN_NOT_PAUSED"
                )
        run, written = resumed
        self._publish(run, written)
        if run.status == PENDING:
            await self._dispatcher.enqueue([run.id])
        return run

    async def delete(self, project_id: uuid.UUID, run_id: str) -> None:
        async with self._pool.acquire() as conn:
            status = await store.delete(conn, project_id, run_id)
        if status is None:
            raise run_not_found(run_id)
        if status not in TERMINAL_RUN_STATUSES:
            raise FailedPrecondition(
                f"Run '{run_id}' is {status}; only COMPLETED, FAILED or CANCELLED runs can be"
                " deleted (cancel it first)",
                reason="RUN_NOT_FINISHED",
                metadata={"run_id": run_id, "status": status},
            )

    async def signal(
        self,
        project_id: uuid.UUID,
        run_id: str,
        name: str,
        payload: Any,
        *,
        sent_by: str | None,
    ) -> tuple[bool, datetime]:
        """Deliver a signal; whether it was a repeat, and when it was first received."""
        async with self._pool.acquire() as conn, conn.transaction():
            found = await store.signal(
                conn, project_id, run_id, name, payload, created_by=sent_by or DEFAULT_ACTOR
            )
        if found is None:
            raise run_not_found(run_id)
        status, duplicate, received_at, written = found
        if status in TERMINAL_RUN_STATUSES and not duplicate:
            raise FailedPrecondition(
                f"Run '{run_id}' is {status}; a finished run takes no signals",
                reason="RUN_FINISHED",
                metadata={"run_id": run_id, "status": status},
            )
        if written:
            self._publisher.publish(written)
            await self._dispatcher.broadcast_signal(run_id)
            if status != PAUSED:
                await self._dispatcher.enqueue([run_id])
        return duplicate, received_at

    async def step(self, project_id: uuid.UUID, run_id: str, step_id: str) -> RunStep:
        async with self._pool.acquire() as conn:
            await self._require(conn, project_id, run_id)
            step = await store.get_step(conn, run_id, step_id)
        if step is None:
            raise NotFound(
                f"Run '{run_id}' has no step '{step_id}'",
                reason="STEP_NOT_FOUND",
                metadata={"run_id": run_id, "step_id": step_id},
            )
        return step

    @classmethod
    async def _not_in(
        cls,
        conn: Connection,
        project_id: uuid.UUID,
        run_id: str,
        allowed: str,
        verb: str,
        reason: str,
    ) -> FailedPrecondition:
        """The error for a run that is not in a status that allows the change (or a
        NotFound raised for an unknown run)."""
        current = await cls._require(conn, project_id, run_id)
        return FailedPrecondition(
            f"Run '{run_id}' is {current.status}; only {allowed} runs can be {verb}",
            reason=reason,
            metadata={"run_id": run_id, "status": current.status},
        )

    @staticmethod
    async def _require(conn: Connection, project_id: uuid.UUID, run_id: str) -> Run:
        run = await store.get(conn, project_id, run_id)
        if run is None:
            raise run_not_found(run_id)
        return run
