"""What drivers read besides their run: agents by name and pinned workflow graphs.

Workflow versions are immutable, so they are cached for good (bounded). Agents change,
so they are cached only briefly: a changed URL or a deactivation applies to steps that
start a few seconds later at most.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import asyncpg

from baton_server.agents.auth import auth_headers
from baton_server.agents.client import AgentEndpoint
from baton_server.agents.model import RetryPolicy
from baton_server.sealing import SecretBox

_AGENTS = """
SELECT name, url, protocol, auth_type, auth_config, timeout_ms, max_retries,
       initial_delay_ms, max_delay_ms, backoff_multiplier
FROM agents WHERE project_id = $1 AND name = ANY($2::text[]) AND status = 'active'
"""
_WORKFLOW_DATA = "SELECT workflow_data FROM workflow_versions WHERE id = $1"


@dataclass(frozen=True)
class AgentTarget:
    """How to call one agent, and how to retry it."""

    endpoint: AgentEndpoint
    retry: RetryPolicy


class Catalog:
    """Cached lookups for drivers."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        secrets: SecretBox,
        *,
        agent_ttl_s: float = 2.0,
        max_workflows: int = 1024,
    ) -> None:
        self._pool = pool
        self._secrets = secrets
        self._agent_ttl_s = agent_ttl_s
        self._agents: dict[tuple[uuid.UUID, str], tuple[float, AgentTarget | None]] = {}
        self._workflows: OrderedDict[uuid.UUID, dict[str, Any]] = OrderedDict()
        self._max_workflows = max_workflows

    async def workflow_data(self, definition_id: uuid.UUID) -> dict[str, Any]:
        cached = self._workflows.get(definition_id)
        if cached is None:
            raw = await self._pool.fetchval(_WORKFLOW_DATA, definition_id)
            cached = json.loads(raw)
            self._workflows[definition_id] = cached
            if len(self._workflows) > self._max_workflows:
                self._workflows.popitem(last=False)
        return cached

    async def agents(self, project_id: uuid.UUID, names: set[str]) -> dict[str, AgentTarget | None]:
        """The project's active agents by name (None for a missing or inactive one)."""
        now = time.monotonic()
        cache = self._agents
        stale = {
            n
            for n in names
            if (project_id, n) not in cache or now - cache[project_id, n][0] > self._agent_ttl_s
        }
        if stale:
            rows = await self._pool.fetch(_AGENTS, project_id, list(stale))
            found = {n: None for n in stale} | {row["name"]: self._target(row) for row in rows}
            for name, target in found.items():
                cache[project_id, name] = (now, target)
        return {n: cache[project_id, n][1] for n in names}

    def _target(self, row: asyncpg.Record) -> AgentTarget:
        sealed = row["auth_config"]
        return _target(row, self._secrets.open(sealed) if sealed else None)


def _target(row: asyncpg.Record, auth_config: dict[str, Any] | None) -> AgentTarget:
    return AgentTarget(
        endpoint=AgentEndpoint(
            url=row["url"],
            protocol=row["protocol"],
            timeout_ms=row["timeout_ms"],
            headers=auth_headers(row["auth_type"], auth_config),
        ),
        retry=RetryPolicy(
            max_retries=row["max_retries"],
            initial_delay_ms=row["initial_delay_ms"],
            max_delay_ms=row["max_delay_ms"],
            backoff_multiplier=row["backoff_multiplier"],
        ),
    )
