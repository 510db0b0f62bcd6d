"""Pausing, resuming and deleting runs, reading one step, and retention: through Envoy,
with real workers (in process and as `baton worker` processes) and real A2A agents."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import time
from typing import Any

import httpx
import redis.asyncio as redis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.db.pool import create_pool
from baton_server.executor.retention import Retention
from baton_server.executor.worker import Worker
from tests.access_support import TEST_SECRETS
from tests.conftest import FAST_DELIVERIES, FAST_WORKER
from tests.rest_support import error_of
from tests.runs_support import worker_process
from tests.test_rest_api import assert_plain_json, create_agent
from tests.test_rest_events import execute


def slow_then_two(agent: str, sleep_ms: int) -> dict[str, Any]:
    """a (sleeps), then b, then c: a chain of one echo agent."""
    return {
        "name": f"paused-{sleep_ms}",
        "start_step": "a",
        "steps": {
            "a": {
                "agent_name": agent,
                "next_step": "b",
                "input_mapping": {"_mode": "sleep", "_sleep_ms": sleep_ms, "n": 1},
            },
            "b": {"agent_name": agent, "next_step": "c", "input_mapping": {"n": 2}},
            "c": {"agent_name": agent, "input_mapping": {"prev": "${b.output.n}"}},
        },
    }


async def chain_workflow(rest: httpx.AsyncClient, agent_url: str, sleep_ms: int) -> str:
    await create_agent(rest, "echo", url=agent_url)
    body = slow_then_two("echo", sleep_ms)
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    return str(workflow["id"])


async def run_of(rest: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}"), 200)
    return run


async def step_of(rest: httpx.AsyncClient, run_id: str, step_id: str) -> dict[str, Any]:
    step: dict[str, Any] = assert_plain_json(
        await rest.get(f"/api/v1/runs/{run_id}/steps/{step_id}"), 200
    )
    return step


async def until(check: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def wait_status(rest: httpx.AsyncClient, run_id: str, step_id: str, status: str) -> None:
    async def reached() -> bool:
        current: str = (await step_of(rest, run_id, step_id))["status"]
        return current == status

    await until(reached)


async def finished(rest: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = assert_plain_json(
        await rest.get(f"/api/v1/runs/{run_id}/wait?timeout=30s"), 200
    )
    return run


async def test_a_paused_run_finishes_its_step_starts_nothing_and_completes_after_resume(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    run_id = await execute(rest, await chain_workflow(rest, echo_agent_url, 500))
    await wait_status(rest, run_id, "a", "RUNNING")

    paused = assert_plain_json(
        await rest.post(f"/api/v1/runs/{run_id}/pause", json={"reason": "review"}), 200
    )
    assert paused["status"] == "PAUSED"
    # The step in flight finishes and records its output; nothing else starts.
    await wait_status(rest, run_id, "a", "COMPLETED")
    assert (await step_of(rest, run_id, "a"))["output_data"]["n"] == 1

    async def given_back() -> bool:
        return worker.running == 0

    await until(given_back)  # holds no worker capacity while paused
    await asyncio.sleep(0.5)
    assert (await run_of(rest, run_id))["status"] == "PAUSED"
    assert (await step_of(rest, run_id, "b"))["status"] == "PENDING"
    logs = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/logs"), 200)["logs"]
    messages = [line["message"] for line in logs]
    assert any(m.startswith("Run paused by system: review") for m in messages)
    assert any("gave it back" in m for m in messages)

    resumed = assert_plain_json(await rest.post(f"/api/v1/runs/{run_id}/resume", json={}), 200)
    assert resumed["status"] == "PENDING"  # its worker had given it back
    done = await finished(rest, run_id)
    assert done["status"] == "COMPLETED"
    assert done["output"]["prev"] == 2
    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
    assert [(s["step_id"], s["status"], s["attempt"]) for s in steps] == [
        ("a", "COMPLETED", 1),
        ("b", "COMPLETED", 1),
        ("c", "COMPLETED", 1),
    ]


async def test_resuming_while_the_step_is_still_in_flight_goes_straight_on(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    run_id = await execute(rest, await chain_workflow(rest, echo_agent_url, 600))
    await wait_status(rest, run_id, "a", "RUNNING")
    await rest.post(f"/api/v1/runs/{run_id}/pause", json={})
    resumed = assert_plain_json(await rest.post(f"/api/v1/runs/{run_id}/resume", json={}), 200)
    assert resumed["status"] == "RUNNING"  # its driver still holds it, and goes on
    done = await finished(rest, run_id)
    assert done["status"] == "COMPLETED"
    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
    assert {s["attempt"] for s in steps} == {1}


async def test_pause_resume_and_cancel_refuse_what_makes_no_sense(
    rest: httpx.AsyncClient,
) -> None:
    # No worker here: the run stays PENDING until paused.
    await create_agent(rest, "echo")
    body = slow_then_two("echo", 10)
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    run_id = await execute(rest, workflow["id"])

    not_paused = await rest.post(f"/api/v1/runs/{run_id}/resume", json={})
    assert not_paused.status_code == 400
    assert error_of(not_paused)["reason"] == "RUN_NOT_PAUSED"
    assert "is PENDING; only PAUSED runs can be resumed" in error_of(not_paused)["message"]

    paused = assert_plain_json(await rest.post(f"/api/v1/runs/{run_id}/pause", json={}), 200)
    assert paused["status"] == "PAUSED"
    again = await rest.post(f"/api/v1/runs/{run_id}/pause", json={})
    assert again.status_code == 400
    assert error_of(again)["reason"] == "RUN_NOT_PAUSABLE"
    assert error_of(again)["metadata"]["status"] == "PAUSED"

    too_long = await rest.post(f"/api/v1/runs/{run_id}/pause", json={"reason": "x" * 1001})
    assert too_long.status_code == 400
    assert list(error_of(too_long)["fields"]) == ["reason"]

    cancelled = assert_plain_json(
        await rest.post(f"/api/v1/runs/{run_id}/cancel", json={"reason": "stop"}), 200
    )
    assert cancelled["status"] == "CANCELLED"
    for action, reason in (("pause", "RUN_NOT_PAUSABLE"), ("resume", "RUN_NOT_PAUSED")):
        refused = await rest.post(f"/api/v1/runs/{run_id}/{action}", json={})
        assert refused.status_code == 400
        assert error_of(refused)["reason"] == reason

    unknown = await rest.post("/api/v1/runs/run-nope/pause", json={})
    assert unknown.status_code == 404
    assert error_of(unknown)["reason"] == "RUN_NOT_FOUND"


async def test_a_paused_run_survives_a_killed_worker_and_resumes_on_another(
    rest: httpx.AsyncClient,
    database_url: str,
    redis_url: str,
    echo_agent_url: str,
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    first = worker_process(database_url, redis_url)
    worker_processes.append(first)
    run_id = await execute(rest, await chain_workflow(rest, echo_agent_url, 1500))
    await wait_status(rest, run_id, "a", "RUNNING")
    assert_plain_json(await rest.post(f"/api/v1/runs/{run_id}/pause", json={}), 200)
    os.kill(first.pid, signal.SIGKILL)  # with step a in flight
    first.wait(10)

    worker_processes.append(worker_process(database_url, redis_url))
    await asyncio.sleep(3.0)  # past the dead worker's 2 s lease and some reconciler rounds
    assert (await run_of(rest, run_id))["status"] == "PAUSED"  # nobody took it
    assert (await step_of(rest, run_id, "b"))["status"] == "PENDING"

    resumed = assert_plain_json(await rest.post(f"/api/v1/runs/{run_id}/resume", json={}), 200)
    assert resumed["status"] == "PENDING"
    done = await finished(rest, run_id)
    assert done["status"] == "COMPLETED"
    attempts = {
        s["step_id"]: s["attempt"]
        for s in assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
    }
    assert attempts == {"a": 2, "b": 1, "c": 1}  # only the step in flight at the kill again


async def test_one_step_with_its_input_and_output(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    run_id = await execute(rest, await chain_workflow(rest, echo_agent_url, 10))
    await finished(rest, run_id)
    step = await step_of(rest, run_id, "c")
    assert (step["step_id"], step["status"], step["agent_name"]) == ("c", "COMPLETED", "echo")
    assert step["input_data"] == {"prev": 2}
    assert step["output_data"]["prev"] == 2
    missing = await rest.get(f"/api/v1/runs/{run_id}/steps/nope")
    assert missing.status_code == 404
    assert error_of(missing)["reason"] == "STEP_NOT_FOUND"


async def test_deleting_a_finished_run_and_refusing_an_unfinished_one(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    workflow_id = await chain_workflow(rest, echo_agent_url, 1500)
    run_id = await execute(rest, workflow_id)
    await wait_status(rest, run_id, "a", "RUNNING")
    refused = await rest.delete(f"/api/v1/runs/{run_id}")
    assert refused.status_code == 400
    assert error_of(refused)["reason"] == "RUN_NOT_FINISHED"
    assert (await run_of(rest, run_id))["status"] == "RUNNING"  # nothing changed

    await rest.post(f"/api/v1/runs/{run_id}/cancel", json={})
    deleted = assert_plain_json(await rest.delete(f"/api/v1/runs/{run_id}"), 200)
    assert deleted == {
        "run_id": run_id,
        "deleted": True,
        "message": "Execution deleted successfully",
    }
    for path in ("", "/steps", "/logs", "/steps/a"):
        gone = await rest.get(f"/api/v1/runs/{run_id}{path}")
        assert gone.status_code == 404, path
    again = await rest.delete(f"/api/v1/runs/{run_id}")
    assert again.status_code == 404
    assert error_of(again)["reason"] == "RUN_NOT_FOUND"


async def backdate(engine: AsyncEngine, run_id: str, days: float) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE runs SET completed_at = now() - make_interval(secs => :s),"
                " cancelled_at = CASE WHEN cancelled_at IS NULL THEN NULL"
                " ELSE now() - make_interval(secs => :s) END WHERE id = :id"
            ),
            {"s": days * 86400, "id": run_id},
        )


async def test_retention_purges_runs_finished_long_ago_one_worker_at_a_time(
    rest: httpx.AsyncClient,
    engine: AsyncEngine,
    database_url: str,
    redis_url: str,
    echo_agent_url: str,
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    body = {"name": "quick", "start_step": "s", "steps": {"s": {"agent_name": "echo"}}}
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    settings = dataclasses.replace(FAST_WORKER, run_retention_days=7.0, retention_interval_s=0.2)
    worker = Worker(
        database_url, redis_url, settings, secrets=TEST_SECRETS, deliveries=FAST_DELIVERIES
    )
    await worker.start()
    try:
        ids = [await execute(rest, workflow["id"]) for _ in range(4)]
        for run_id in ids:
            assert (await finished(rest, run_id))["status"] == "COMPLETED"
        old, recent, kept = ids[:2], ids[2], ids[3]
        for run_id in old:
            await backdate(engine, run_id, 8)
        await backdate(engine, recent, 6)

        async def purged() -> bool:
            codes = [(await rest.get(f"/api/v1/runs/{r}")).status_code for r in old]
            return codes == [404, 404]

        await until(purged)
        for run_id in (recent, kept):
            assert (await run_of(rest, run_id))["status"] == "COMPLETED"
    finally:
        await worker.stop()


async def test_retention_rounds_wait_for_the_worker_holding_the_lock(
    database_url: str, redis_url: str, engine: AsyncEngine
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    client = redis.Redis.from_url(redis_url)
    try:
        retention = Retention(pool, client, days=1)
        assert await retention.purge_once() == 0
        async with pool.acquire() as holder, holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock($1)", 0x6261746F6E03)
            assert await retention.purge_once() is None  # another worker is purging
    finally:
        await pool.close()
        await client.aclose()
