"""What drivers read besides their run: agents by name and pinned workflow graphs.

Workflow versions are immutable, so they are cached for good (bounded). Agents change:
every change bumps its project's ``agents_revision`` in the changing transaction, every
executor commit reads that revision back (:meth:`Catalog.observe`), and a cached agent
older than the revision a commit saw is loaded again. A step's start is such a commit,
so every step that starts after an agent change has returned calls the changed agent,
at the cost of one query per change rather than one per step.

Model prices are read only for steps whose agents report usage without a cost, and
kept for :data:`PRICES_TTL_S`: a price change reaches the workers within that time.
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
from baton_server.usage import store as usage_store
from baton_server.usage.model import ModelPrice

PRICES_TTL_S = 5.0

# The revision comes from the same snapshot as the agents (one row even if none match).
_AGENTS = """
SELECT p.agents_revision, a.name, a.url, a.protocol, a.auth_type, a.auth_config,
       a.timeout_ms, a.max_retries, a.initial_delay_ms, a.max_delay_ms, a.backoff_multiplier
FROM projects p
LEFT JOIN agents a
  ON a.project_id = p.id AND a.name = ANY($2::text[]) AND a.status = 'active'
WHERE p.id = $1
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
        max_workflows: int = 1024,
    ) -> None:
        self._pool = pool
        self._secrets = secrets
        # (project, name) -> (the project's agents revision when loaded, the agent)
        self._agents: dict[tuple[uuid.UUID, str], tuple[int, AgentTarget | None]] = {}
        # The newest agents revision seen per project.
        self._revisions: dict[uuid.UUID, int] = {}
        self._workflows: OrderedDict[uuid.UUID, dict[str, Any]] = OrderedDict()
        self._max_workflows = max_workflows
        # project -> (monotonic expiry, its prices by model)
        self._prices: dict[uuid.UUID, tuple[float, dict[str, ModelPrice]]] = {}

    async def prices(self, project_id: uuid.UUID) -> dict[str, ModelPrice]:
        """The project's model prices by model, at most PRICES_TTL_S old."""
        cached = self._prices.get(project_id)
        now = time.monotonic()
        if cached is None or cached[0] <= now:
            async with self._pool.acquire() as conn:
                prices = await usage_store.prices_by_model(conn, project_id)
            cached = now + PRICES_TTL_S, prices
            self._prices[project_id] = cached
        return cached[1]

    async def workflow_data(self, definition_id: uuid.UUID) -> dict[str, Any]:
        cached = self._workflows.get(definition_id)
        if cached is None:
            raw = await self._pool.fetchval(_WORKFLOW_DATA, definition_id)
            cached = json.loads(raw)
            self._workflows[definition_id] = cached
            if len(self._workflows) > self._max_workflows:
                self._workflows.popitem(last=False)
        return cached

    def observe(self, project_id: uuid.UUID, revision: int) -> None:
        """A commit saw this agents revision of the project: older entries are stale."""
        if revision > self._revisions.get(project_id, -1):
            self._revisions[project_id] = revision

    async def agents(self, project_id: uuid.UUID, names: set[str]) -> dict[str, AgentTarget | None]:
        """The project's active agents by name (None for a missing or inactive one),
        as of the newest revision observed."""
        cache = self._agents
        current = self._revisions.get(project_id, -1)
        stale = {
            n for n in names if (project_id, n) not in cache or cache[project_id, n][0] < current
        }
        if stale:
            loaded, found = await load_agents(self._pool, self._secrets, project_id, stale)
            revision = loaded if loaded is not None else current
            self.observe(project_id, revision)
            for name, target in found.items():
                cache[project_id, name] = (revision, target)
        return {n: cache[project_id, n][1] for n in names}


async def load_agents(
    pool: asyncpg.Pool, secrets: SecretBox, project_id: uuid.UUID, names: set[str]
) -> tuple[int | None, dict[str, AgentTarget | None]]:
    """The project's agents revision and its active agents by name (None for a missing
    or inactive one), read now; the revision is None for an unknown project."""
    rows = await pool.fetch(_AGENTS, project_id, list(names))
    found: dict[str, AgentTarget | None] = dict.fromkeys(names)
    for row in rows:
        if row["name"] is not None:
            sealed = row["auth_config"]
            found[row["name"]] = _target(row, secrets.open(sealed) if sealed else None)
    return (rows[0]["agents_revision"] if rows else None), found


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
