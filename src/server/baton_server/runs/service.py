"""Run use cases of the API; each public method is one transaction.

Executing a run commits it (PENDING, with its steps) before it is put on the Redis
stream, so accepted work is never lost: if the enqueue fails or the process dies in
between, the reconciler finds the run in PostgreSQL and enqueues it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from baton_server.db.errors import violated_constraint
from baton_server.errors import FailedPrecondition, NotFound
from baton_server.events.publisher import EventPublisher
from baton_server.paging import Page, PageRequest, Sort
from baton_server.runs import events, store
from baton_server.runs.dispatch import Dispatcher
from baton_server.runs.model import (
    PENDING,
    Run,
    RunEvent,
    RunStep,
    new_run_id,
    new_step_execution_id,
)
from baton_server.workflows import store as workflow_store
from baton_server.workflows.graph import StepGraph
from baton_server.workflows.service import workflow_not_found

DEFAULT_ACTOR = "system"


def run_not_found(run_id: str) -> NotFound:
    return NotFound(
        f"Run '{run_id}' not found", reason="RUN_NOT_FOUND", metadata={"run_id": run_id}
    )


class RunService:
    """Starts, lists, retries and cancels runs; the executor does the running."""

    def __init__(
        self, engine: AsyncEngine, dispatcher: Dispatcher, publisher: EventPublisher
    ) -> None:
        self._engine = engine
        self._dispatcher = dispatcher
        self._publisher = publisher

    def _publish(self, run: Run, written: list[RunEvent]) -> None:
        self._publisher.publish([(event, str(run.workflow_id)) for event in written])

    async def execute(
        self,
        workflow_id: uuid.UUID,
        input_data: dict[str, Any],
        *,
        request_id: str | None,
        triggered_by: str | None,
    ) -> Run:
        try:
            async with self._engine.begin() as conn:
                if request_id:
                    existing = await store.find_by_request_id(conn, workflow_id, request_id)
                    if existing:
                        return existing
                run, written = await self._create(
                    conn, workflow_id, input_data, request_id, triggered_by or DEFAULT_ACTOR
                )
        except IntegrityError as error:
            # Two requests with the same key raced; the other one won.
            if request_id and violated_constraint(error) == store.REQUEST_ID_INDEX:
                async with self._engine.connect() as conn:
                    existing = await store.find_by_request_id(conn, workflow_id, request_id)
                if existing:
                    return existing
            raise
        self._publish(run, written)
        await self._dispatcher.enqueue([run.id])
        return run

    @staticmethod
    async def _create(
        conn: AsyncConnection,
        workflow_id: uuid.UUID,
        input_data: dict[str, Any],
        request_id: str | None,
        triggered_by: str,
    ) -> tuple[Run, list[RunEvent]]:
        workflow = await workflow_store.get(conn, workflow_id)
        if workflow is None:
            raise workflow_not_found(workflow_id)
        if workflow.status != "active":
            raise FailedPrecondition(
                f"Workflow '{workflow_id}' is {workflow.status}; only active workflows run",
                reason="WORKFLOW_NOT_ACTIVE",
                metadata={"workflow_id": str(workflow_id), "status": workflow.status},
            )
        run_id = new_run_id()
        order = StepGraph.of(workflow.workflow_data).topological_order()
        drafts = [
            events.log(
                f"Run created for workflow '{workflow.name}' version {workflow.version}"
                f" by {triggered_by}"
            ),
            events.run_status(PENDING, progress=0),
        ]
        steps = workflow.workflow_data["steps"]
        run = await store.insert(
            conn,
            {
                "id": run_id,
                "workflow_id": workflow.id,
                "workflow_name": workflow.name,
                "definition_id": workflow.definition_id,
                "workflow_version": workflow.version,
                "status": PENDING,
                "input_data": input_data,
                "triggered_by": triggered_by,
                "request_id": request_id,
                "enqueued_at": datetime.now().astimezone(),
                # The run is new: its first event numbers need no row lock.
                "event_seq": len(drafts),
            },
            [
                {
                    "id": new_step_execution_id(),
                    "run_id": run_id,
                    "step_id": step_id,
                    "agent_name": steps[step_id]["agent_name"],
                    "position": position,
                    "status": PENDING,
                }
                for position, step_id in enumerate(order)
            ],
        )
        written = await store.insert_events(
            conn,
            run_id,
            drafts,
            first=1,
            status=PENDING,
            progress=0,
        )
        return run, written

    async def get(self, run_id: str) -> Run:
        async with self._engine.connect() as conn:
            return await self._require(conn, run_id)

    async def list_page(
        self,
        *,
        status: str | None,
        workflow_id: str | None,
        definition_id: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
        sort: Sort,
        page: PageRequest,
    ) -> Page[Run]:
        async with self._engine.connect() as conn:
            return await store.list_page(
                conn,
                status=status,
                workflow_id=workflow_id,
                definition_id=definition_id,
                created_after=created_after,
                created_before=created_before,
                sort=sort,
                page=page,
            )

    async def steps(self, run_id: str) -> list[RunStep]:
        async with self._engine.connect() as conn:
            await self._require(conn, run_id)
            return await store.list_steps(conn, run_id)

    async def logs(
        self, run_id: str, *, step_id: str | None, after_sequence: int, limit: int
    ) -> list[RunEvent]:
        async with self._engine.connect() as conn:
            await self._require(conn, run_id)
            return await store.list_events(
                conn,
                run_id,
                after_sequence=after_sequence,
                limit=limit,
                types=[events.LOG],
                step_id=step_id,
            )

    async def cancel(self, run_id: str, *, reason: str, cancelled_by: str | None) -> Run:
        async with self._engine.begin() as conn:
            cancelled = await store.cancel(
                conn,
                run_id,
                reason=reason or "no reason given",
                cancelled_by=cancelled_by or DEFAULT_ACTOR,
            )
            if cancelled is None:
                current = await self._require(conn, run_id)
                raise FailedPrecondition(
                    f"Run '{run_id}' is {current.status}; only PENDING or RUNNING runs can be"
                    " cancelled",
                    reason="RUN_NOT_CANCELLABLE",
                    metadata={"run_id": run_id, "status": current.status},
                )
        run, written = cancelled
        self._publish(run, written)
        await self._dispatcher.broadcast_cancel(run_id)
        return run

    async def retry(self, run_id: str) -> Run:
        async with self._engine.begin() as conn:
            reset = await store.reset_for_retry(conn, run_id)
            if reset is None:
                current = await self._require(conn, run_id)
                raise FailedPrecondition(
                    f"Run '{run_id}' is {current.status}; only FAILED or CANCELLED runs can be"
                    " retried",
                    reason="RUN_NOT_RETRYABLE",
                    metadata={"run_id": run_id, "status": current.status},
                )
        run, written = reset
        self._publish(run, written)
        await self._dispatcher.enqueue([run.id])
        return run

    @staticmethod
    async def _require(conn: AsyncConnection, run_id: str) -> Run:
        run = await store.get(conn, run_id)
        if run is None:
            raise run_not_found(run_id)
        return run
