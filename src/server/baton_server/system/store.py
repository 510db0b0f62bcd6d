"""Queries behind the metrics. Every function takes the caller's connection."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_server.db.tables import runs
from baton_server.runs.model import PENDING


async def count_runs_by_status(conn: AsyncConnection) -> dict[str, int]:
    """Number of runs in each status (statuses without runs are absent)."""
    rows = await conn.execute(sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status))
    return {status: count for status, count in rows.all()}


async def oldest_pending_age(conn: AsyncConnection) -> float:
    """Seconds the longest-waiting PENDING run has waited for a worker (0 when none).

    Measured from ``updated_at``, when the run became PENDING (a retried run is old but
    has only just started waiting), and by the database's clock, which wrote it.
    """
    age = await conn.scalar(
        sa.select(
            sa.func.coalesce(
                sa.func.extract("epoch", sa.func.now() - sa.func.min(runs.c.updated_at)), 0
            )
        ).where(runs.c.status == PENDING)
    )
    return float(age or 0)
