"""Project, API key and audit queries. Every function takes the caller's connection."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_server.access.model import ApiKey, AuditEvent, Project, Role
from baton_server.db.pages import fetch_page
from baton_server.db.tables import api_keys, audit_events, projects
from baton_server.paging import Page, PageRequest, Sort

PROJECT_NAME_CONSTRAINT = "uq_projects_name"
KEY_NAME_INDEX = "uq_api_keys_live_name"

_KEY_COLUMNS = [c for c in api_keys.c if c.name != "secret_hash"]


def _to_project(row: Any) -> Project:
    return Project(row.id, row.name, row.description, row.created_at)


def to_api_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        project_id=row.project_id,
        name=row.name,
        role=Role[row.role],
        prefix=row.prefix,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _to_audit_event(row: Any) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        created_at=row.created_at,
        actor=row.actor,
        actor_type=row.actor_type,
        role=Role[row.role],
        project_id=row.project_id,
        method=row.method,
        resource_type=row.resource_type,
        resource_id=row.resource_id,
        client_address=row.client_address,
    )


# -- projects ----------------------------------------------------------------------------


async def insert_project(conn: AsyncConnection, name: str, description: str) -> Project:
    row = (
        await conn.execute(
            projects.insert()
            .values(id=uuid.uuid4(), name=name, description=description)
            .returning(*projects.c)
        )
    ).one()
    return _to_project(row)


async def get_project(conn: AsyncConnection, project_id: uuid.UUID) -> Project | None:
    row = (await conn.execute(sa.select(projects).where(projects.c.id == project_id))).first()
    return _to_project(row) if row else None


async def find_project(conn: AsyncConnection, id_or_name: str) -> Project | None:
    """The project with this id (a UUID) or else this name."""
    try:
        condition = projects.c.id == uuid.UUID(id_or_name)
    except ValueError:
        condition = projects.c.name == id_or_name
    row = (await conn.execute(sa.select(projects).where(condition))).first()
    return _to_project(row) if row else None


async def list_projects(conn: AsyncConnection, page: PageRequest) -> Page[Project]:
    return await fetch_page(
        conn,
        sa.select(projects),
        table=projects,
        conditions=[],
        sort_columns={"name": projects.c.name},
        sort=Sort("name", descending=False),
        page=page,
        convert=_to_project,
    )


# -- API keys ----------------------------------------------------------------------------


async def insert_key(conn: AsyncConnection, values: Mapping[str, Any]) -> ApiKey:
    row = (await conn.execute(api_keys.insert().values(**values).returning(*_KEY_COLUMNS))).one()
    return to_api_key(row)


async def get_key(conn: AsyncConnection, key_id: uuid.UUID) -> ApiKey | None:
    row = (await conn.execute(sa.select(*_KEY_COLUMNS).where(api_keys.c.id == key_id))).first()
    return to_api_key(row) if row else None


async def key_by_prefix(conn: AsyncConnection, prefix: str) -> tuple[ApiKey, bytes] | None:
    """A key and its stored hash, found by its visible prefix."""
    row = (await conn.execute(sa.select(api_keys).where(api_keys.c.prefix == prefix))).first()
    return (to_api_key(row), row.secret_hash) if row else None


async def list_keys(
    conn: AsyncConnection, *, project_id: uuid.UUID | None, include_revoked: bool, page: PageRequest
) -> Page[ApiKey]:
    conditions: list[sa.ColumnElement[bool]] = []
    if project_id is not None:
        conditions.append(api_keys.c.project_id == project_id)
    if not include_revoked:
        conditions.append(api_keys.c.revoked_at.is_(None))
    return await fetch_page(
        conn,
        sa.select(*_KEY_COLUMNS),
        table=api_keys,
        conditions=conditions,
        sort_columns={"created_at": api_keys.c.created_at},
        sort=Sort("created_at"),
        page=page,
        convert=to_api_key,
    )


async def revoke_key(conn: AsyncConnection, key_id: uuid.UUID) -> ApiKey | None:
    """Revoke a live key (compare-and-set); None when it was not live."""
    row = (
        await conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=sa.func.now())
            .returning(*_KEY_COLUMNS)
        )
    ).first()
    return to_api_key(row) if row else None


async def touch_keys(conn: AsyncConnection, key_ids: Sequence[uuid.UUID]) -> None:
    await conn.execute(
        api_keys.update().where(api_keys.c.id.in_(key_ids)).values(last_used_at=sa.func.now())
    )


# -- audit trail -------------------------------------------------------------------------


async def insert_audit_events(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    await conn.execute(audit_events.insert(), list(rows))


async def list_audit_events(
    conn: AsyncConnection,
    *,
    actor: str | None,
    resource_type: str | None,
    resource_id: str | None,
    project_id: uuid.UUID | None,
    created_after: datetime | None,
    created_before: datetime | None,
    page: PageRequest,
) -> Page[AuditEvent]:
    conditions: list[sa.ColumnElement[bool]] = []
    for column, value in (
        (audit_events.c.actor, actor),
        (audit_events.c.resource_type, resource_type),
        (audit_events.c.resource_id, resource_id),
        (audit_events.c.project_id, project_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if created_after is not None:
        conditions.append(audit_events.c.created_at >= created_after)
    if created_before is not None:
        conditions.append(audit_events.c.created_at < created_before)
    return await fetch_page(
        conn,
        sa.select(audit_events),
        table=audit_events,
        conditions=conditions,
        sort_columns={"created_at": audit_events.c.created_at},
        sort=Sort("created_at"),
        page=page,
        convert=_to_audit_event,
    )
