"""The audit trail: every successful write, recorded in batches.

Entries are queued in memory and written by one background task, many rows per
statement, so a write RPC costs no extra commit. The price: a process killed with
``kill -9`` loses the entries of its last fraction of a second (the writes themselves
are safe in PostgreSQL). A graceful stop writes everything queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.access import store
from baton_server.tasks import cancel_and_wait

log = logging.getLogger(__name__)

DROPPED = Counter(
    "baton_audit_events_dropped",
    "Audit events dropped because PostgreSQL could not take them and the queue was full.",
)


class AuditLog:
    """Queues audit rows and writes them to PostgreSQL in the background."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        flush_interval_s: float = 0.2,
        max_batch: int = 500,
        max_queued: int = 100_000,
    ) -> None:
        self._engine = engine
        self._flush_interval_s = flush_interval_s
        self._max_batch = max_batch
        self._max_queued = max_queued
        self._queued: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-log")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        with contextlib.suppress(Exception):
            await self.flush()

    def add(self, row: dict[str, Any]) -> None:
        if len(self._queued) >= self._max_queued:
            self._queued.pop(0)
            DROPPED.inc()
        self._queued.append(row)
        if len(self._queued) >= self._max_batch:
            self._wake.set()

    async def flush(self) -> None:
        """Write everything queued so far (readers call it to see their own writes)."""
        async with self._lock:
            while self._queued:
                batch = self._queued[: self._max_batch]
                async with self._engine.begin() as conn:
                    await store.insert_audit_events(conn, batch)
                del self._queued[: len(batch)]

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception as error:  # PostgreSQL away: keep the rows, try again
                log.warning("audit events not written yet: %s", error)
