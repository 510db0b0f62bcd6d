"""The SDK when the server goes away: retries of idempotent calls only, and event streams
that resume across a server restart without gaps or duplicates."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine

import baton_sdk
from baton_sdk import RetryPolicy, RunEvent, RunEventType, RunStatus, UnavailableError
from baton_server.executor.worker import Worker
from tests.agents.process import unused_loopback_port
from tests.sdk_support import RestartableServer, linear_workflow, sleeping


@pytest.fixture
async def server(
    engine: AsyncEngine, redis_client: redis.Redis
) -> AsyncIterator[RestartableServer]:
    """A server of this test's own, so it can be stopped without harming the others."""
    own = RestartableServer(engine, redis_client)
    yield own
    await own.stop()


async def start_later(server: RestartableServer, delay: float) -> None:
    await asyncio.sleep(delay)
    await server.start()


async def test_idempotent_calls_are_retried_until_the_server_is_back(
    server: RestartableServer,
) -> None:
    server.port = unused_loopback_port()
    async with baton_sdk.connect(server.target, lazy=True) as client:
        starting = asyncio.create_task(start_later(server, 0.3))
        try:
            # The first attempts fail (nothing listens yet); a retry gets through.
            assert await client.agents.list().to_list() == []
        finally:
            await starting


async def test_creates_are_not_retried(server: RestartableServer) -> None:
    server.port = unused_loopback_port()
    async with baton_sdk.connect(server.target, lazy=True) as client:
        starting = asyncio.create_task(start_later(server, 0.3))
        began = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            await client.agents.create(name="once", url="http://once.example")
        assert time.monotonic() - began < 0.3, "failed at once, without waiting to retry"
        assert isinstance(caught.value, ConnectionError)
        await starting
        assert await client.agents.find("once") is None


async def test_retries_give_up_after_max_attempts(server: RestartableServer) -> None:
    target = f"127.0.0.1:{unused_loopback_port()}"
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.05, max_backoff=0.05)
    async with baton_sdk.connect(target, lazy=True, retry=policy) as client:
        with pytest.raises(UnavailableError):
            await client.agents.list().to_list()


async def test_connect_fails_fast_when_nothing_listens() -> None:
    target = f"127.0.0.1:{unused_loopback_port()}"
    with pytest.raises(UnavailableError, match=target):
        await baton_sdk.connect(target, connect_timeout=0.3)


async def test_watch_resumes_across_a_server_restart_without_gaps_or_duplicates(
    server: RestartableServer,
    worker: Worker,
    echo_agent_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="baton_sdk")
    await server.start()
    async with baton_sdk.connect(server.target) as client:
        await client.agents.create(name="echo", url=echo_agent_url)
        workflow = await linear_workflow(
            client, "echo", sleeping(400), sleeping(400), sleeping(400), {}
        )
        run = await client.runs.execute(workflow)
        events: list[RunEvent] = []
        restarted = False
        async for event in client.runs.watch(run):
            events.append(event)
            if not restarted and event.type is RunEventType.STEP_STARTED:
                # The worker goes on without the API server: events keep being
                # written while no server streams them.
                await server.stop()
                await asyncio.sleep(0.5)
                await server.start()
                restarted = True
        assert restarted
        snapshot, *later = events
        assert snapshot.type is RunEventType.STATE_SYNC
        sequences = [e.sequence for e in later]
        assert sequences == list(range(snapshot.sequence + 1, snapshot.sequence + 1 + len(later)))
        assert later[-1].terminal
        assert later[-1].status is RunStatus.COMPLETED
        completed = [e.step_id for e in later if e.type is RunEventType.STEP_COMPLETED]
        assert completed == ["s1", "s2", "s3", "s4"]
        resumes = [r.getMessage() for r in caplog.records if "resuming after" in r.getMessage()]
        assert resumes, "the stream really broke and was resumed"


async def test_wait_survives_a_server_restart(
    server: RestartableServer, worker: Worker, echo_agent_url: str
) -> None:
    await server.start()
    async with baton_sdk.connect(server.target) as client:
        await client.agents.create(name="echo", url=echo_agent_url)
        workflow = await linear_workflow(client, "echo", sleeping(600), {})
        run = await client.runs.execute(workflow)
        waiting = asyncio.create_task(client.runs.wait(run, timeout=30))
        await asyncio.sleep(0.2)
        await server.stop()
        await asyncio.sleep(0.3)
        await server.start()
        finished = await waiting
        assert finished.status is RunStatus.COMPLETED


async def test_watch_gives_up_when_the_server_stays_away(
    server: RestartableServer, worker: Worker, echo_agent_url: str
) -> None:
    await server.start()
    policy = RetryPolicy(stream_reconnect_timeout=0.5, max_backoff=0.1)
    async with baton_sdk.connect(server.target, retry=policy) as client:
        await client.agents.create(name="echo", url=echo_agent_url)
        workflow = await linear_workflow(client, "echo", sleeping(2000))
        run = await client.runs.execute(workflow)

        async def watch_while_the_server_goes_away() -> None:
            async for event in client.runs.watch(run):
                if event.type is RunEventType.STATE_SYNC:
                    await server.stop()

        with pytest.raises(UnavailableError, match="could not resume"):
            await watch_while_the_server_goes_away()
