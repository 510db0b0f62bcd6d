"""Statistics queries: the hourly rollups plus the deltas not yet folded into them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from baton_server.runs.store import Connection


@dataclass(frozen=True)
class Filters:
    """Which runs count."""

    project_id: uuid.UUID
    workflow_id: uuid.UUID | None = None
    start: datetime | None = None
    end: datetime | None = None


def _where(filters: Filters, at: str, args: list[Any]) -> str:
    args.append(filters.project_id)
    conditions = [f"project_id = ${len(args)}"]
    for template, value in (
        ("workflow_id = {}", filters.workflow_id),
        (at + " >= {}", filters.start),
        (at + " < {}", filters.end),
    ):
        if value is not None:
            args.append(value)
            conditions.append(template.format(f"${len(args)}"))
    return " AND ".join(conditions)


async def run_figures(conn: Connection, filters: Filters, time_zone: str) -> list[dict[str, Any]]:
    """Ended runs per (workflow id, workflow name, status, month in ``time_zone``)."""
    args: list[Any] = [time_zone]
    rollups = _where(filters, "hour", args)
    deltas = _where(filters, "ended_at", args)
    rows = await conn.fetch(
        f"""
        WITH s AS (
            SELECT workflow_id, hour AS at, status, runs, duration_ms, cost, tokens
            FROM run_stats WHERE {rollups}
            UNION ALL
            SELECT workflow_id, ended_at, status, runs, duration_ms, cost, tokens
            FROM run_stats_deltas WHERE {deltas}
        )
        SELECT s.workflow_id, w.name AS workflow_name, s.status,
               to_char(s.at AT TIME ZONE $1, 'YYYY-MM') AS month,
               sum(s.runs)::bigint AS runs, sum(s.duration_ms) AS duration_ms,
               sum(s.cost) AS cost, sum(s.tokens)::bigint AS tokens
        FROM s LEFT JOIN workflows w ON w.id = s.workflow_id
        GROUP BY 1, 2, 3, 4
        """,
        *args,
    )
    return [dict(row) for row in rows]


async def model_figures(conn: Connection, filters: Filters) -> list[dict[str, Any]]:
    """AI calls' tokens and cost per model."""
    args: list[Any] = []
    rollups = _where(filters, "hour", args)
    deltas = _where(filters, "at", args)
    rows = await conn.fetch(
        f"""
        WITH s AS (
            SELECT model, tokens_input, tokens_output, cost FROM usage_stats WHERE {rollups}
            UNION ALL
            SELECT model, tokens_input, tokens_output, cost
            FROM usage_stats_deltas WHERE {deltas}
        )
        SELECT model, sum(tokens_input)::bigint AS tokens_input,
               sum(tokens_output)::bigint AS tokens_output, sum(cost) AS cost
        FROM s GROUP BY model
        """,
        *args,
    )
    return [dict(row) for row in rows]
