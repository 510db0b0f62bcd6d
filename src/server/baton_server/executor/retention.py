"""Run retention: runs that finished more than ``BATON_RUN_RETENTION_DAYS`` ago are
deleted, with their steps and events.

Every worker runs the loop, but a round only proceeds under a transaction-scoped
advisory lock, so one worker at a time purges. A round deletes one small batch, oldest
first (``ix_runs_finished_at``), and skips rows another transaction holds; a full batch
is followed by a short pause rather than the next batch at once, and no round starts
while a worker's admission control holds runs back, so purging a long history never
competes with the executor for long.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import redis.asyncio as redis

from baton_server import keys
from baton_server.runs import store

log = logging.getLogger(__name__)

_RETENTION_LOCK = 0x6261746F6E03


class Retention:
    """Purges finished runs older than ``days``, a batch at a time."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        redis_client: redis.Redis,
        *,
        days: float,
        interval_s: float = 60.0,
        batch: int = 500,
        pause_s: float = 0.5,
    ) -> None:
        self._pool = pool
        self._redis = redis_client
        self._days = days
        self._interval_s = interval_s
        self._batch = batch
        self._pause_s = pause_s

    async def purge_once(self) -> int | None:
        """Delete one batch; how many runs, or None if another worker is purging."""
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RETENTION_LOCK):
                return None
            return await store.purge_finished(conn, older_than_days=self._days, limit=self._batch)

    async def run(self) -> None:
        while True:
            deleted = None
            if not await self._redis.exists(keys.EXECUTOR_SATURATED):
                deleted = await self.purge_once()
            if deleted:
                log.info(
                    "retention deleted %d run(s) finished over %g days ago", deleted, self._days
                )
            await asyncio.sleep(self._pause_s if deleted == self._batch else self._interval_s)
