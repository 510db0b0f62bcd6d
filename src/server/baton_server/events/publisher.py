"""Publishes committed events to Redis, in commit order, without making writers wait."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from baton_server import keys
from baton_server.events import codec
from baton_server.runs import events as event_types
from baton_server.runs.model import RunEvent
from baton_server.tasks import cancel_and_wait

log = logging.getLogger(__name__)


def _by_transaction(
    batch: Sequence[tuple[RunEvent, str]],
) -> list[list[tuple[RunEvent, str]]]:
    """Consecutive events of the same run and transaction (same timestamp), in order."""
    groups: list[list[tuple[RunEvent, str]]] = []
    for item in batch:
        event = item[0]
        if groups and (
            groups[-1][0][0].run_id == event.run_id
            and groups[-1][0][0].created_at == event.created_at
        ):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


class EventPublisher:
    """A queue drained by one task; a Redis outage drops messages (watchers then read
    the events from PostgreSQL) but never blocks the executor."""

    def __init__(self, client: redis.Redis, *, max_queued: int = 100_000) -> None:
        self._redis = client
        self._queue: asyncio.Queue[list[tuple[RunEvent, str]]] = asyncio.Queue(max_queued)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="event publisher")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])

    def publish(self, committed: Sequence[tuple[RunEvent, str]]) -> None:
        """Queue events (with their run's workflow id) committed by one transaction."""
        if committed:
            try:
                self._queue.put_nowait(list(committed))
            except asyncio.QueueFull:
                log.warning("event publisher backlog full; watchers will read PostgreSQL")

    async def _drain(self) -> None:
        while True:
            batch = await self._queue.get()
            while not self._queue.empty() and len(batch) < 1000:
                batch += self._queue.get_nowait()
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for group in _by_transaction(batch):
                        events = [event for event, _ in group]
                        workflow_id = group[0][1]
                        channel = keys.run_events_channel(events[0].run_id)
                        pipe.publish(channel, codec.encode(events, workflow_id))
                        status_changes = [e for e in events if e.type == event_types.RUN_STATUS]
                        if status_changes:
                            pipe.publish(
                                keys.RUN_FEED_CHANNEL, codec.encode(status_changes, workflow_id)
                            )
                    await pipe.execute()
            except (RedisError, OSError) as error:
                log.warning("could not publish %d event(s): %s", len(batch), error)
