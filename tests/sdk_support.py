"""Helpers for SDK and CLI tests: workflow definitions and a restartable server."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_sdk import BatonClient, Step, Workflow
from baton_server.app import GrpcApp, start_grpc
from tests.access_support import TEST_SECRETS

SLEEP = {"_mode": "sleep"}


def sleeping(ms: int, **mapping: Any) -> dict[str, Any]:
    """An echo-agent input mapping that makes the step take ``ms`` milliseconds."""
    return {**SLEEP, "_sleep_ms": ms, **mapping}


async def linear_workflow(
    client: BatonClient,
    agent: str,
    *mappings: dict[str, Any],
    name: str = "linear",
) -> Workflow:
    """A workflow of steps ``s1 -> s2 -> ...``, each calling ``agent`` with a mapping."""
    ids = [f"s{index}" for index in range(1, len(mappings) + 1)]
    steps = {
        step_id: Step(
            agent_name=agent,
            input_mapping=mapping,
            next_step=ids[index + 1] if index + 1 < len(ids) else None,
        )
        for index, (step_id, mapping) in enumerate(zip(ids, mappings, strict=True))
    }
    return await client.workflows.create(name=name, start_step=ids[0], steps=steps)


class RestartableServer:
    """A Baton gRPC server of the test's own, which can be stopped and started again on
    the same port (as after a crash or a deploy)."""

    def __init__(self, engine: AsyncEngine, redis_client: redis.Redis) -> None:
        self._engine = engine
        self._redis = redis_client
        self.port = 0
        self.app: GrpcApp | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.app = await start_grpc(
            self._engine, self._redis, f"127.0.0.1:{self.port}", secrets=TEST_SECRETS
        )
        self.port = self.app.port
        await self.app.set_serving(True)

    async def stop(self, grace: float = 0) -> None:
        if self.app is not None:
            await self.app.stop(grace=grace)
            self.app = None
