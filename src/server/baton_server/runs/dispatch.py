"""Hands runs to workers through Redis: the run stream and the control channel."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from baton_server import keys

log = logging.getLogger(__name__)


class Dispatcher:
    """Enqueues runs and broadcasts cancellations. Failures are logged, not raised:
    a run that misses the stream is found and enqueued by the reconciler."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    async def enqueue(self, run_ids: Sequence[str]) -> bool:
        """Put runs on the stream; False if Redis could not be reached."""
        if not run_ids:
            return True
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for run_id in run_ids:
                    pipe.xadd(
                        keys.RUN_STREAM,
                        {"run_id": run_id},
                        maxlen=keys.RUN_STREAM_MAXLEN,
                        approximate=True,
                    )
                await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("could not enqueue %d run(s), the reconciler will: %s", len(run_ids), error)
            return False
        return True

    async def broadcast_cancel(self, run_id: str) -> None:
        """Tell the worker driving ``run_id`` to stop now (it also notices by itself)."""
        await self._broadcast("cancel", run_id)

    async def broadcast_signal(self, run_id: str) -> None:
        """Tell the worker driving ``run_id``, if any, that it received a signal (a
        worker taking it later finds the signal by itself)."""
        await self._broadcast("signal", run_id)

    async def _broadcast(self, command: str, run_id: str) -> None:
        try:
            await self._redis.publish(keys.RUN_CONTROL_CHANNEL, f"{command}:{run_id}")
        except (RedisError, OSError) as error:
            log.warning("could not broadcast %s of %s: %s", command, run_id, error)
