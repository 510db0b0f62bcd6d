"""Access use cases: projects, API keys, the audit trail. Each public method is one
transaction. Only admins reach them (the contract's rules), except ``project``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from baton_server.access import store
from baton_server.access.audit import AuditLog
from baton_server.access.credentials import key_hash, key_prefix, new_key
from baton_server.access.model import ApiKey, AuditEvent, Identity, Project, Role
from baton_server.db.errors import violated_constraint
from baton_server.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from baton_server.paging import Page, PageRequest


def project_not_found(project_id: uuid.UUID | str) -> NotFound:
    return NotFound(
        f"Project with id '{project_id}' not found",
        reason="PROJECT_NOT_FOUND",
        metadata={"project_id": str(project_id)},
    )


def _key_not_found(key_id: uuid.UUID) -> NotFound:
    return NotFound(
        f"API key with id '{key_id}' not found",
        reason="API_KEY_NOT_FOUND",
        metadata={"key_id": str(key_id)},
    )


async def create_key(
    conn: AsyncConnection,
    *,
    name: str,
    role: Role,
    project_id: uuid.UUID,
    expires_at: datetime | None,
    created_by: str,
) -> tuple[ApiKey, str]:
    """A new key and its secret, in the caller's transaction (also ``baton keys create``)."""
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidArgument(
            "expires_at must be in the future",
            reason="INVALID_FIELD",
            violations=[FieldViolation("expires_at", "must be in the future")],
        )
    if await store.get_project(conn, project_id) is None:
        raise project_not_found(project_id)
    secret = new_key()
    try:
        async with conn.begin_nested():
            key = await store.insert_key(
                conn,
                {
                    "id": uuid.uuid4(),
                    "project_id": project_id,
                    "name": name,
                    "role": role.name,
                    "prefix": key_prefix(secret),
                    "secret_hash": key_hash(secret),
                    "created_by": created_by,
                    "expires_at": expires_at,
                },
            )
    except IntegrityError as error:
        if violated_constraint(error) == store.KEY_NAME_INDEX:
            raise AlreadyExists(
                f"API key name '{name}' already exists in the project",
                reason="API_KEY_NAME_TAKEN",
                metadata={"name": name, "project_id": str(project_id)},
            ) from None
        raise
    return key, secret


class AccessService:
    """Manages projects and API keys; reads the audit trail."""

    def __init__(self, engine: AsyncEngine, audit: AuditLog) -> None:
        self._engine = engine
        self._audit = audit

    async def create_project(self, name: str, description: str) -> Project:
        try:
            async with self._engine.begin() as conn:
                return await store.insert_project(conn, name, description)
        except IntegrityError as error:
            if violated_constraint(error) == store.PROJECT_NAME_CONSTRAINT:
                raise AlreadyExists(
                    f"Project name '{name}' already exists",
                    reason="PROJECT_NAME_TAKEN",
                    metadata={"name": name},
                ) from None
            raise

    async def project(self, project_id: uuid.UUID) -> Project:
        async with self._engine.connect() as conn:
            project = await store.get_project(conn, project_id)
        if project is None:
            raise project_not_found(project_id)
        return project

    async def list_projects(self, page: PageRequest) -> Page[Project]:
        async with self._engine.connect() as conn:
            return await store.list_projects(conn, page)

    async def create_key(
        self,
        caller: Identity,
        *,
        name: str,
        role: Role,
        project_id: uuid.UUID | None,
        expires_at: datetime | None,
    ) -> tuple[ApiKey, str]:
        async with self._engine.begin() as conn:
            return await create_key(
                conn,
                name=name,
                role=role,
                project_id=project_id or caller.project_id,
                expires_at=expires_at,
                created_by=caller.name,
            )

    async def key(self, key_id: uuid.UUID) -> ApiKey:
        async with self._engine.connect() as conn:
            key = await store.get_key(conn, key_id)
        if key is None:
            raise _key_not_found(key_id)
        return key

    async def list_keys(
        self, *, project_id: uuid.UUID | None, include_revoked: bool, page: PageRequest
    ) -> Page[ApiKey]:
        async with self._engine.connect() as conn:
            return await store.list_keys(
                conn, project_id=project_id, include_revoked=include_revoked, page=page
            )

    async def revoke_key(self, caller: Identity, key_id: uuid.UUID) -> ApiKey:
        if caller.key_id == key_id:
            raise FailedPrecondition(
                "a key cannot revoke itself; revoke it with another admin key",
                reason="API_KEY_IN_USE",
                metadata={"key_id": str(key_id)},
            )
        async with self._engine.begin() as conn:
            revoked = await store.revoke_key(conn, key_id)
            if revoked is not None:
                return revoked
            current = await store.get_key(conn, key_id)
        if current is None:
            raise _key_not_found(key_id)
        return current  # already revoked: nothing changes

    async def audit_events(
        self,
        *,
        actor: str | None,
        resource_type: str | None,
        resource_id: str | None,
        project_id: uuid.UUID | None,
        created_after: datetime | None,
        created_before: datetime | None,
        page: PageRequest,
    ) -> Page[AuditEvent]:
        await self._audit.flush()  # this server's latest writes are visible at once
        async with self._engine.connect() as conn:
            return await store.list_audit_events(
                conn,
                actor=actor,
                resource_type=resource_type,
                resource_id=resource_id,
                project_id=project_id,
                created_after=created_after,
                created_before=created_before,
                page=page,
            )
