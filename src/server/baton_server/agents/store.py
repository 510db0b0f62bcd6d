"""Agent queries. Every function takes the connection of the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_server.agents.model import Agent, RetryPolicy
from baton_server.db.pages import fetch_page
from baton_server.db.tables import agents, projects
from baton_server.paging import Page, PageRequest, Sort

LIVE_NAME_INDEX = "uq_agents_live_name"

_PUBLIC_COLUMNS = [c for c in agents.c if c.name != "auth_config"]
_SORT_COLUMNS = {
    "name": agents.c.name,
    "created_at": agents.c.created_at,
    "updated_at": agents.c.updated_at,
}


def _to_agent(row: Any) -> Agent:
    return Agent(
        id=row.id,
        name=row.name,
        url=row.url,
        description=row.description,
        auth_type=row.auth_type,
        timeout_ms=row.timeout_ms,
        retry=RetryPolicy(
            max_retries=row.max_retries,
            initial_delay_ms=row.initial_delay_ms,
            max_delay_ms=row.max_delay_ms,
            backoff_multiplier=row.backoff_multiplier,
        ),
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        protocol=row.protocol,
        project_id=row.project_id,
    )


async def _bump_revision(conn: AsyncConnection, project_id: uuid.UUID) -> None:
    """Tell the workers' agent caches (at their next commit) that an agent changed.

    In the changing transaction, so a step that starts after the change has returned
    sees the new revision and reloads the agent.
    """
    await conn.execute(
        projects.update()
        .where(projects.c.id == project_id)
        .values(agents_revision=projects.c.agents_revision + 1)
    )


async def insert(conn: AsyncConnection, values: Mapping[str, Any]) -> Agent:
    row = (await conn.execute(agents.insert().values(**values).returning(*_PUBLIC_COLUMNS))).one()
    agent = _to_agent(row)
    await _bump_revision(conn, agent.project_id)
    return agent


async def get(
    conn: AsyncConnection,
    project_id: uuid.UUID,
    agent_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Agent | None:
    """The agent if it exists in the project (another project's agent is None too)."""
    query = sa.select(*_PUBLIC_COLUMNS).where(
        agents.c.id == agent_id, agents.c.project_id == project_id
    )
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).one_or_none()
    return _to_agent(row) if row else None


async def get_sealed_auth_config(conn: AsyncConnection, agent_id: uuid.UUID) -> str | None:
    """The stored, sealed credentials; only for calling or probing the agent itself."""
    query = sa.select(agents.c.auth_config).where(agents.c.id == agent_id)
    value: str | None = (await conn.execute(query)).scalar_one_or_none()
    return value


async def update(conn: AsyncConnection, agent_id: uuid.UUID, values: Mapping[str, Any]) -> Agent:
    query = (
        agents.update()
        .where(agents.c.id == agent_id)
        .values(**values, updated_at=sa.func.now())
        .returning(*_PUBLIC_COLUMNS)
    )
    agent = _to_agent((await conn.execute(query)).one())
    await _bump_revision(conn, agent.project_id)
    return agent


async def list_page(
    conn: AsyncConnection,
    project_id: uuid.UUID,
    *,
    status: str | None,
    name: str | None,
    sort: Sort,
    page: PageRequest,
) -> Page[Agent]:
    conditions = [
        agents.c.project_id == project_id,
        agents.c.status == status if status else agents.c.status != "deleted",
    ]
    if name:
        conditions.append(agents.c.name == name)
    return await fetch_page(
        conn,
        sa.select(*_PUBLIC_COLUMNS),
        table=agents,
        conditions=conditions,
        sort_columns=_SORT_COLUMNS,
        sort=sort,
        page=page,
        convert=_to_agent,
    )


async def statuses_by_name(
    conn: AsyncConnection, project_id: uuid.UUID, names: Collection[str]
) -> dict[str, str]:
    """Status of the project's live (non-deleted) agent of each given name that exists."""
    rows = await conn.execute(
        sa.select(agents.c.name, agents.c.status).where(
            agents.c.project_id == project_id,
            agents.c.name.in_(list(names)),
            agents.c.status != "deleted",
        )
    )
    return {row.name: row.status for row in rows}
