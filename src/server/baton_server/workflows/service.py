"""Workflow use cases; each public method is one transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from baton_server.agents import store as agent_store
from baton_server.db.errors import violated_constraint
from baton_server.errors import AlreadyExists, FailedPrecondition, FieldViolation, NotFound
from baton_server.paging import Page, PageRequest, Sort
from baton_server.webhooks.outbox import emit_sa
from baton_server.workflows import store
from baton_server.workflows.graph import validate_structure
from baton_server.workflows.model import (
    Workflow,
    WorkflowChanges,
    WorkflowSpec,
    WorkflowVersion,
    workflow_data,
)


def workflow_not_found(workflow_id: uuid.UUID | str) -> NotFound:
    return NotFound(
        f"Workflow with id '{workflow_id}' not found",
        reason="WORKFLOW_NOT_FOUND",
        metadata={"workflow_id": str(workflow_id)},
    )


def _name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"Workflow name '{name}' already exists",
        reason="WORKFLOW_NAME_TAKEN",
        metadata={"name": name},
    )


async def _check_agents(
    conn: AsyncConnection, project_id: uuid.UUID, data: Mapping[str, Any]
) -> None:
    """Every step's agent must exist in the project and be active (checked inside the
    transaction)."""
    steps: Mapping[str, Mapping[str, Any]] = data["steps"]
    names = {s["agent_name"] for s in steps.values() if s["agent_name"]}  # wait steps: none
    statuses = await agent_store.statuses_by_name(conn, project_id, names)
    unavailable = {name for name in names if statuses.get(name) != "active"}
    if not unavailable:
        return
    raise FailedPrecondition(
        "; ".join(f"Agent '{n}' not found or inactive" for n in sorted(unavailable)),
        reason="AGENT_UNAVAILABLE",
        violations=[
            FieldViolation(
                f"steps.{step_id}.agent_name",
                f"Agent '{step['agent_name']}' not found or inactive",
            )
            for step_id, step in steps.items()
            if step["agent_name"] in unavailable
        ],
        metadata={"agent_names": ",".join(sorted(unavailable))},
    )


async def _announce(conn: AsyncConnection, event: str, workflow: Workflow) -> None:
    """Queue a ``workflow.*`` webhook event in the changing transaction."""
    await emit_sa(
        conn,
        workflow.project_id,
        event,
        workflow.updated_at,
        {
            "workflow_id": str(workflow.id),
            "name": workflow.name,
            "version": workflow.version,
            "status": workflow.status,
        },
    )


def _event_of(values: Mapping[str, Any]) -> str:
    """The webhook event of an update: a status change names itself, else ``updated``."""
    return {
        "active": "workflow.activated",
        "inactive": "workflow.deactivated",
        "deleted": "workflow.deleted",
    }.get(values.get("status", ""), "workflow.updated")


def _deleted(workflow_id: uuid.UUID) -> FailedPrecondition:
    return FailedPrecondition(
        f"Workflow '{workflow_id}' is deleted and can no longer change",
        reason="WORKFLOW_DELETED",
        metadata={"workflow_id": str(workflow_id)},
    )


class WorkflowService:
    """Creates, versions, lists and (de)activates workflows."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, project_id: uuid.UUID, spec: WorkflowSpec) -> Workflow:
        data = workflow_data(spec.start_step, spec.steps)
        validate_structure(data)
        try:
            async with self._engine.begin() as conn:
                await _check_agents(conn, project_id, data)
                values = {
                    "id": uuid.uuid4(),
                    "project_id": project_id,
                    "name": spec.name,
                    "description": spec.description,
                    "status": "active",
                    "max_concurrent_runs": spec.max_concurrent_runs,
                }
                workflow = await store.insert(conn, values, data)
                await _announce(conn, "workflow.created", workflow)
                return workflow
        except IntegrityError as error:
            if violated_constraint(error) == store.LIVE_NAME_INDEX:
                raise _name_taken(spec.name) from None
            raise

    async def get(self, project_id: uuid.UUID, workflow_id: uuid.UUID) -> Workflow:
        async with self._engine.connect() as conn:
            return await self._require(conn, project_id, workflow_id)

    async def list_page(
        self,
        project_id: uuid.UUID,
        *,
        status: str | None,
        name: str | None,
        sort: Sort,
        page: PageRequest,
    ) -> Page[Workflow]:
        async with self._engine.connect() as conn:
            return await store.list_page(
                conn, project_id, status=status, name=name, sort=sort, page=page
            )

    async def update(
        self, project_id: uuid.UUID, workflow_id: uuid.UUID, changes: WorkflowChanges
    ) -> Workflow:
        try:
            async with self._engine.begin() as conn:
                current = await self._require(conn, project_id, workflow_id, for_update=True)
                if current.status == "deleted":
                    if changes == WorkflowChanges(status="deleted"):
                        return current
                    raise _deleted(workflow_id)
                values: dict[str, Any] = {}
                for name in ("name", "description", "status"):
                    value = getattr(changes, name)
                    if value is not None and value != getattr(current, name):
                        values[name] = value
                if changes.max_concurrent_runs is not None:
                    limit = changes.max_concurrent_runs or None  # 0: no limit
                    if limit != current.max_concurrent_runs:
                        values["max_concurrent_runs"] = limit
                if changes.start_step is not None or changes.steps is not None:
                    data = workflow_data(
                        changes.start_step or current.workflow_data["start_step"],
                        changes.steps or current.workflow_data["steps"],
                    )
                    if data != current.workflow_data:
                        validate_structure(data)
                        await _check_agents(conn, project_id, data)
                        values["version"] = current.version + 1
                        await store.insert_version(conn, workflow_id, values["version"], data)
                if values.get("status") == "active":
                    await _check_agents(conn, project_id, current.workflow_data)
                if not values:
                    return current
                await store.update(conn, workflow_id, values)
                updated = await self._require(conn, project_id, workflow_id)
                await _announce(conn, _event_of(values), updated)
                return updated
        except IntegrityError as error:
            if violated_constraint(error) == store.LIVE_NAME_INDEX:
                raise _name_taken(changes.name or "") from None
            raise

    async def delete(self, project_id: uuid.UUID, workflow_id: uuid.UUID) -> None:
        await self.update(project_id, workflow_id, WorkflowChanges(status="deleted"))

    async def set_active(
        self, project_id: uuid.UUID, workflow_id: uuid.UUID, active: bool
    ) -> Workflow:
        return await self.update(
            project_id, workflow_id, WorkflowChanges(status="active" if active else "inactive")
        )

    async def list_versions(
        self, project_id: uuid.UUID, any_id: uuid.UUID, page: PageRequest
    ) -> Page[WorkflowVersion]:
        async with self._engine.connect() as conn:
            workflow_id = await store.resolve_workflow_id(conn, any_id)
            if workflow_id is None:
                raise workflow_not_found(any_id)
            workflow = await store.get(conn, project_id, workflow_id)
            if workflow is None:
                raise workflow_not_found(any_id)
            return await store.list_versions(conn, workflow, page)

    @staticmethod
    async def _require(
        conn: AsyncConnection,
        project_id: uuid.UUID,
        workflow_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Workflow:
        workflow = await store.get(conn, project_id, workflow_id, for_update=for_update)
        if workflow is None:
            raise workflow_not_found(workflow_id)
        return workflow
