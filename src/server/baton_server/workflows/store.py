"""Workflow and version queries. Every function takes the caller's connection."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_server.db.pages import fetch_page
from baton_server.db.tables import workflow_versions, workflows
from baton_server.paging import Page, PageRequest, Sort
from baton_server.workflows.model import Workflow, WorkflowVersion

LIVE_NAME_INDEX = "uq_workflows_live_name"

_CURRENT = sa.select(
    *workflows.c,
    workflow_versions.c.id.label("definition_id"),
    workflow_versions.c.workflow_data,
).join(
    workflow_versions,
    sa.and_(
        workflow_versions.c.workflow_id == workflows.c.id,
        workflow_versions.c.version == workflows.c.version,
    ),
)
_SORT_COLUMNS = {
    "name": workflows.c.name,
    "created_at": workflows.c.created_at,
    "updated_at": workflows.c.updated_at,
    "version": workflows.c.version,
}


def _to_workflow(row: Any) -> Workflow:
    return Workflow(
        id=row.id,
        name=row.name,
        description=row.description,
        version=row.version,
        definition_id=row.definition_id,
        workflow_data=row.workflow_data,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        project_id=row.project_id,
        max_concurrent_runs=row.max_concurrent_runs,
    )


async def insert(
    conn: AsyncConnection, values: Mapping[str, Any], workflow_data: dict[str, Any]
) -> Workflow:
    await conn.execute(workflows.insert().values(**values, version=1))
    await insert_version(conn, values["id"], 1, workflow_data)
    workflow = await get(conn, values["project_id"], values["id"])
    assert workflow is not None
    return workflow


async def insert_version(
    conn: AsyncConnection, workflow_id: uuid.UUID, version: int, workflow_data: dict[str, Any]
) -> None:
    await conn.execute(
        workflow_versions.insert().values(
            id=uuid.uuid4(),
            workflow_id=workflow_id,
            version=version,
            workflow_data=workflow_data,
        )
    )


async def get(
    conn: AsyncConnection,
    project_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Workflow | None:
    """The workflow if it exists in the project (another project's is None too)."""
    query = _CURRENT.where(workflows.c.id == workflow_id, workflows.c.project_id == project_id)
    if for_update:
        query = query.with_for_update(of=workflows)
    row = (await conn.execute(query)).one_or_none()
    return _to_workflow(row) if row else None


async def update(conn: AsyncConnection, workflow_id: uuid.UUID, values: Mapping[str, Any]) -> None:
    await conn.execute(
        workflows.update()
        .where(workflows.c.id == workflow_id)
        .values(**values, updated_at=sa.func.now())
    )


async def list_page(
    conn: AsyncConnection,
    project_id: uuid.UUID,
    *,
    status: str | None,
    name: str | None,
    sort: Sort,
    page: PageRequest,
) -> Page[Workflow]:
    conditions = [
        workflows.c.project_id == project_id,
        workflows.c.status == status if status else workflows.c.status != "deleted",
    ]
    if name:
        conditions.append(workflows.c.name == name)
    return await fetch_page(
        conn,
        _CURRENT,
        table=workflows,
        conditions=conditions,
        sort_columns=_SORT_COLUMNS,
        sort=sort,
        page=page,
        convert=_to_workflow,
    )


async def resolve_workflow_id(conn: AsyncConnection, any_id: uuid.UUID) -> uuid.UUID | None:
    """The workflow id for a workflow id or for the id of one of its versions."""
    query = sa.union_all(
        sa.select(workflows.c.id).where(workflows.c.id == any_id),
        sa.select(workflow_versions.c.workflow_id).where(workflow_versions.c.id == any_id),
    )
    found: uuid.UUID | None = (await conn.execute(query)).scalars().first()
    return found


async def list_versions(
    conn: AsyncConnection, workflow: Workflow, page: PageRequest
) -> Page[WorkflowVersion]:
    rows = await conn.execute(
        sa.select(workflow_versions)
        .where(workflow_versions.c.workflow_id == workflow.id)
        .order_by(workflow_versions.c.version.desc())
        .limit(page.page_size)
        .offset(page.offset)
    )
    items = [
        WorkflowVersion(
            id=row.id,
            workflow_id=row.workflow_id,
            name=workflow.name,
            version=row.version,
            workflow_data=row.workflow_data,
            # Only the current version carries the workflow's status.
            status=workflow.status if row.version == workflow.version else "inactive",
            created_at=row.created_at,
        )
        for row in rows
    ]
    return Page(items=items, total=workflow.version, request=page)
