"""WaitRun: one call that returns a run once it has finished (or when its timeout ends)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
import redis.asyncio as redis
from google.protobuf import duration_pb2

from baton.v1 import runs_pb2, runs_pb2_grpc
from baton_server.db.tables import DEFAULT_PROJECT_ID
from baton_server.events.hub import EventHub
from baton_server.executor.worker import Worker
from tests.rest_support import error_of
from tests.rpc_errors import failure
from tests.runs_support import as_json, chain, create_workflow, execute, register_agent

Run = runs_pb2.Run
SLOW = {"_mode": "sleep", "_sleep_ms": 400}


def wait_request(run_id: str, seconds: float | None = None) -> runs_pb2.WaitRunRequest:
    request = runs_pb2.WaitRunRequest(run_id=run_id)
    if seconds is not None:
        request.timeout.FromNanoseconds(int(seconds * 1e9))
    return request


async def test_returns_the_run_as_soon_as_it_completes(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(
        workflows,
        chain(("slow", "echo", {**SLOW, "v": 7}), ("last", "echo", {"v": "${slow.output.v}"})),
    )
    started = await execute(runs, workflow.id, {})
    assert started.status == Run.PENDING
    finished = await runs.WaitRun(wait_request(started.id, 30))
    assert finished.status == Run.COMPLETED
    assert finished.progress == 100
    assert finished.HasField("completed_at")
    assert as_json(finished.output)["v"] == 7
    # The whole run, exactly as GetRun returns it now that it is final.
    assert finished == await runs.GetRun(runs_pb2.GetRunRequest(run_id=started.id))
    # A finished run is returned at once.
    begun = time.monotonic()
    assert await runs.WaitRun(wait_request(started.id, 30)) == finished
    assert time.monotonic() - begun < 0.5


async def test_timeout_returns_the_unfinished_run(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(
        workflows, chain(("slow", "echo", {"_mode": "sleep", "_sleep_ms": 3000}))
    )
    run = await execute(runs, workflow.id, {})
    begun = time.monotonic()
    unfinished = await runs.WaitRun(wait_request(run.id, 0.4))
    waited = time.monotonic() - begun
    assert unfinished.status in {Run.PENDING, Run.RUNNING}
    assert 0.35 <= waited < 2.0
    await runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.id))


async def test_a_cancellation_ends_the_wait(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(
        workflows, chain(("slow", "echo", {"_mode": "sleep", "_sleep_ms": 20000}))
    )
    run = await execute(runs, workflow.id, {})
    waiting = asyncio.ensure_future(runs.WaitRun(wait_request(run.id, 60)))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.id, reason="enough"))
    cancelled = await asyncio.wait_for(waiting, 2)
    assert cancelled.status == Run.CANCELLED
    assert cancelled.error_message == "Cancelled: enough"


async def test_waits_are_validated(runs: runs_pb2_grpc.RunServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runs.WaitRun(wait_request("run-nope", 1))
    found = failure(caught.value)
    assert (found.code, found.reason) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")
    for bad in (duration_pb2.Duration(seconds=301), duration_pb2.Duration(seconds=-1)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await runs.WaitRun(runs_pb2.WaitRunRequest(run_id="run-x", timeout=bad))
        found = failure(caught.value)
        assert found.code == grpc.StatusCode.INVALID_ARGUMENT
        assert list(found.fields) == ["timeout"]


async def test_without_redis_the_wait_still_ends_from_postgresql(
    stubs: Any, echo_agent_url: str, pool: asyncpg.Pool
) -> None:
    """Finish notices come from Redis; if none arrives (Redis away, or a message lost),
    the waiter looks at PostgreSQL again every ``idle_check_s``."""
    from baton_server.runs.watch import WatchService

    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(workflows, chain(("slow", "echo", SLOW)))
    run = await execute(runs, workflow.id, {})
    # A hub that never connects: no notice will ever come.
    deaf = EventHub(redis.Redis(host="127.0.0.1", port=1))
    watcher = WatchService(pool, deaf, idle_check_s=0.2)
    begun = time.monotonic()
    finished = await watcher.wait_run(DEFAULT_PROJECT_ID, run.id, timeout_s=30)
    assert finished.status == "COMPLETED"
    assert time.monotonic() - begun < 5


async def test_execute_can_wait_for_the_end(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(
        workflows, chain(("a", "echo", {"v": 1}), ("b", "echo", {"v": "${a.output.v}"}))
    )
    request = runs_pb2.ExecuteWorkflowRequest(workflow_id=workflow.id)
    request.wait_timeout.FromSeconds(30)
    finished = await runs.ExecuteWorkflow(request)
    assert finished.status == Run.COMPLETED
    assert as_json(finished.output)["v"] == 1
    assert finished == await runs.GetRun(runs_pb2.GetRunRequest(run_id=finished.id))

    slow = await create_workflow(
        workflows, chain(("slow", "echo", {"_mode": "sleep", "_sleep_ms": 3000}), name="slow")
    )
    request = runs_pb2.ExecuteWorkflowRequest(workflow_id=slow.id)
    request.wait_timeout.FromMilliseconds(300)
    begun = time.monotonic()
    unfinished = await runs.ExecuteWorkflow(request)
    assert unfinished.status in {Run.PENDING, Run.RUNNING}
    assert 0.25 <= time.monotonic() - begun < 2.0
    await runs.CancelRun(runs_pb2.CancelRunRequest(run_id=unfinished.id))


async def test_rest_execute_with_a_wait_answers_200_once_finished(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await rest.post("/api/v1/agents", json={"name": "echo", "url": echo_agent_url})
    body = {
        "name": "one-step",
        "start_step": "only",
        "steps": {"only": {"agent_name": "echo", "input_mapping": {"x": 1}}},
    }
    workflow = (await rest.post("/api/v1/workflows", json=body)).json()
    path = f"/api/v1/workflows/{workflow['id']}/execute"
    done = await rest.post(path, json={"input_data": {}, "wait_timeout": "30s"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "COMPLETED"
    assert "x-http-code" not in done.headers
    started = await rest.post(path, json={"input_data": {}})
    assert started.status_code == 202
    invalid = await rest.post(path, json={"input_data": {}, "wait_timeout": "301s"})
    assert invalid.status_code == 400
    assert list(error_of(invalid)["fields"]) == ["wait_timeout"]


async def test_a_run_that_finished_before_the_wait_began_is_not_waited_for(
    stubs: Any, echo_agent_url: str, pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    """ExecuteWorkflow with a wait starts waiting only after the run is committed and
    enqueued; a run that finishes in between was announced on the feed already, and
    the server remembers it."""
    from baton_server import keys
    from baton_server.events import codec
    from baton_server.runs import store
    from baton_server.runs.model import RunEvent
    from baton_server.runs.watch import WatchService

    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(workflows, chain(("only", "echo", {})))
    started = await execute(runs, workflow.id, {})
    assert (await runs.WaitRun(wait_request(started.id, 30))).status == Run.COMPLETED
    async with pool.acquire() as conn:
        run = await store.get(conn, DEFAULT_PROJECT_ID, started.id)
    assert run is not None
    # A server process whose hub hears the run's end before anyone waits for it, and
    # that would otherwise look at PostgreSQL only every 60 s.
    hub = EventHub(redis_client)
    watcher = WatchService(pool, hub, idle_check_s=60)
    hub.start()
    try:
        await asyncio.sleep(0.3)  # subscribed
        end = RunEvent(
            run.id, 9, "run_status", None, None, None, {"status": "COMPLETED"}, run.updated_at
        )
        await redis_client.publish(keys.RUN_FEED_CHANNEL, codec.encode([end], workflow.id))
        await asyncio.sleep(0.3)  # heard
        begun = time.monotonic()
        waited = await watcher.wait_run(
            DEFAULT_PROJECT_ID,
            run.id,
            timeout_s=5,
            known=dataclasses.replace(run, status="PENDING"),
        )
        assert waited.status == "COMPLETED"
        assert time.monotonic() - begun < 1
    finally:
        await hub.stop()
