"""Folding the statistics deltas into hourly rollups.

The triggers of migration 0012 append a delta row per run end and per AI call. Every
worker runs :meth:`Rollups.run`; a round moves all deltas into the rollups in one
statement per table (delete and upsert together, so a delta counts exactly once), under
a transaction-scoped advisory lock so that one worker at a time folds.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

log = logging.getLogger(__name__)

_ROLLUP_LOCK = 0x6261746F6E04

_FOLD_RUNS = """
WITH moved AS (DELETE FROM run_stats_deltas RETURNING *)
INSERT INTO run_stats AS s (project_id, workflow_id, hour, status, runs, duration_ms, cost,
                            tokens)
SELECT project_id, workflow_id, date_trunc('hour', ended_at, 'UTC'), status, sum(runs),
       sum(duration_ms), sum(cost), sum(tokens)
FROM moved GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
ON CONFLICT (project_id, workflow_id, hour, status) DO UPDATE SET
    runs = s.runs + EXCLUDED.runs,
    duration_ms = s.duration_ms + EXCLUDED.duration_ms,
    cost = s.cost + EXCLUDED.cost,
    tokens = s.tokens + EXCLUDED.tokens
"""

_FOLD_USAGE = """
WITH moved AS (DELETE FROM usage_stats_deltas RETURNING *)
INSERT INTO usage_stats AS s (project_id, workflow_id, hour, model, calls, tokens_input,
                              tokens_output, cost)
SELECT project_id, workflow_id, date_trunc('hour', at, 'UTC'), model, sum(calls),
       sum(tokens_input), sum(tokens_output), sum(cost)
FROM moved GROUP BY 1, 2, 3, 4
ORDER BY 1, 2, 3, 4
ON CONFLICT (project_id, workflow_id, hour, model) DO UPDATE SET
    calls = s.calls + EXCLUDED.calls,
    tokens_input = s.tokens_input + EXCLUDED.tokens_input,
    tokens_output = s.tokens_output + EXCLUDED.tokens_output,
    cost = s.cost + EXCLUDED.cost
"""


async def fold(pool: asyncpg.Pool) -> bool:
    """Move every delta into the rollups; False if another worker is folding."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _ROLLUP_LOCK):
            return False
        await conn.execute(_FOLD_RUNS)
        await conn.execute(_FOLD_USAGE)
    return True


class Rollups:
    """Folds the statistics deltas every ``interval_s`` seconds."""

    def __init__(self, pool: asyncpg.Pool, *, interval_s: float = 5.0) -> None:
        self._pool = pool
        self._interval_s = interval_s

    async def run(self) -> None:
        while True:
            try:
                await fold(self._pool)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("folding statistics failed, trying again later: %s", error)
            await asyncio.sleep(self._interval_s)
