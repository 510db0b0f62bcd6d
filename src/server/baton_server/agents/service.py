"""Agent use cases; each public method is one transaction."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

import aiohttp
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from baton_server.agents import store
from baton_server.agents.auth import auth_headers, check_auth_config
from baton_server.agents.health import AgentHealth, probe_agent
from baton_server.agents.model import Agent, AgentChanges, AgentSpec
from baton_server.db.errors import violated_constraint
from baton_server.errors import AlreadyExists, FailedPrecondition, NotFound
from baton_server.paging import Page, PageRequest, Sort
from baton_server.sealing import SecretBox


def agent_not_found(agent_id: uuid.UUID | str) -> NotFound:
    return NotFound(
        f"Agent with id '{agent_id}' not found",
        reason="AGENT_NOT_FOUND",
        metadata={"agent_id": str(agent_id)},
    )


def _name_taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"Agent name '{name}' already exists",
        reason="AGENT_NAME_TAKEN",
        metadata={"name": name},
    )


class AgentService:
    """Registers, changes, lists and probes agents."""

    def __init__(
        self, engine: AsyncEngine, http: aiohttp.ClientSession, secrets: SecretBox
    ) -> None:
        self._engine = engine
        self._http = http
        self._secrets = secrets

    def _seal(self, auth_config: dict[str, Any] | None) -> str | None:
        return None if auth_config is None else self._secrets.seal(auth_config)

    async def _auth_config(
        self, conn: AsyncConnection, agent_id: uuid.UUID
    ) -> dict[str, Any] | None:
        sealed = await store.get_sealed_auth_config(conn, agent_id)
        return None if sealed is None else self._secrets.open(sealed)

    async def create(self, project_id: uuid.UUID, spec: AgentSpec) -> Agent:
        check_auth_config(spec.auth_type, spec.auth_config)
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "project_id": project_id,
            "name": spec.name,
            "url": spec.url,
            "description": spec.description,
            "auth_type": spec.auth_type,
            "auth_config": self._seal(spec.auth_config),
            "timeout_ms": spec.timeout_ms,
            **asdict(spec.retry),
            "protocol": spec.protocol,
            "status": "active",
        }
        try:
            async with self._engine.begin() as conn:
                return await store.insert(conn, values)
        except IntegrityError as error:
            if violated_constraint(error) == store.LIVE_NAME_INDEX:
                raise _name_taken(spec.name) from None
            raise

    async def get(self, project_id: uuid.UUID, agent_id: uuid.UUID) -> Agent:
        async with self._engine.connect() as conn:
            return await self._require(conn, project_id, agent_id)

    async def list_page(
        self,
        project_id: uuid.UUID,
        *,
        status: str | None,
        name: str | None,
        sort: Sort,
        page: PageRequest,
    ) -> Page[Agent]:
        async with self._engine.connect() as conn:
            return await store.list_page(
                conn, project_id, status=status, name=name, sort=sort, page=page
            )

    async def update(
        self, project_id: uuid.UUID, agent_id: uuid.UUID, changes: AgentChanges
    ) -> Agent:
        values = {k: v for k, v in asdict(changes).items() if v is not None}
        async with self._engine.begin() as conn:
            current = await self._require(conn, project_id, agent_id, for_update=True)
            if current.status == "deleted":
                raise FailedPrecondition(
                    f"Agent '{agent_id}' is deleted and can no longer change",
                    reason="AGENT_DELETED",
                    metadata={"agent_id": str(agent_id)},
                )
            if "auth_type" in values or "auth_config" in values:
                auth_config = (
                    changes.auth_config
                    if changes.auth_config is not None
                    else await self._auth_config(conn, agent_id)
                )
                check_auth_config(changes.auth_type or current.auth_type, auth_config)
            if changes.auth_config is not None:
                values["auth_config"] = self._seal(changes.auth_config)
            if not values:
                return current
            return await store.update(conn, agent_id, values)

    async def delete(self, project_id: uuid.UUID, agent_id: uuid.UUID) -> None:
        async with self._engine.begin() as conn:
            current = await self._require(conn, project_id, agent_id, for_update=True)
            if current.status != "deleted":
                await store.update(conn, agent_id, {"status": "deleted"})

    async def check_health(self, project_id: uuid.UUID, agent_id: uuid.UUID) -> AgentHealth:
        async with self._engine.connect() as conn:
            agent = await self._require(conn, project_id, agent_id)
            auth_config = await self._auth_config(conn, agent_id)
        return await probe_agent(
            self._http,
            agent.url,
            timeout_ms=agent.timeout_ms,
            headers=auth_headers(agent.auth_type, auth_config),
        )

    @staticmethod
    async def _require(
        conn: AsyncConnection,
        project_id: uuid.UUID,
        agent_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Agent:
        agent = await store.get(conn, project_id, agent_id, for_update=for_update)
        if agent is None:
            raise agent_not_found(agent_id)
        return agent
