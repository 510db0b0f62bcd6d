"""Time limits (per run and per step) and per-workflow concurrency limits, through Envoy
with real workers and real A2A agents."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import httpx

from baton_server.executor.worker import Worker
from tests.rest_support import error_of
from tests.runs_support import worker_process
from tests.test_rest_api import assert_plain_json, create_agent


def nap(ms: int, **fields: Any) -> dict[str, Any]:
    return {"agent_name": "echo", "input_mapping": {"_mode": "sleep", "_sleep_ms": ms}, **fields}


async def workflow(rest: httpx.AsyncClient, body: dict[str, Any]) -> str:
    created = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    return str(created["id"])


async def execute(rest: httpx.AsyncClient, workflow_id: str, **options: Any) -> dict[str, Any]:
    response = await rest.post(
        f"/api/v1/workflows/{workflow_id}/execute",
        json={"input_data": {}, **({"execution_options": options} if options else {})},
    )
    assert response.status_code in (200, 202), response.text
    run: dict[str, Any] = response.json()
    return run


async def finished(rest: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = assert_plain_json(
        await rest.get(f"/api/v1/runs/{run_id}/wait?timeout=60s"), 200
    )
    return run


async def steps_of(rest: httpx.AsyncClient, run_id: str) -> dict[str, dict[str, Any]]:
    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
    return {s["step_id"]: s for s in steps}


async def test_a_step_timeout_overrides_the_agents(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url, timeout_ms=30000, max_retries=0)
    body = {
        "name": "impatient",
        "start_step": "quick",
        "steps": {
            # The agent's 30 s are enough for 400 ms; the step allows 150 ms only.
            "quick": nap(50, next_step="slow", timeout_ms=2000),
            "slow": nap(400, timeout_ms=150),
        },
    }
    workflow_id = await workflow(rest, body)
    stored = assert_plain_json(await rest.get(f"/api/v1/workflows/{workflow_id}"), 200)
    assert stored["workflow_data"]["steps"]["slow"]["timeout_ms"] == 150
    run = await finished(rest, (await execute(rest, workflow_id))["run_id"])
    assert run["status"] == "FAILED"
    steps = await steps_of(rest, run["run_id"])
    assert steps["quick"]["status"] == "COMPLETED"
    assert steps["slow"]["status"] == "FAILED"
    assert "timed out" in steps["slow"]["error_message"].lower()


async def test_a_run_past_its_time_limit_fails_and_abandons_its_step(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    workflow_id = await workflow(
        rest, {"name": "long", "start_step": "a", "steps": {"a": nap(20000)}}
    )
    started = await execute(rest, workflow_id, timeout_seconds=1)
    assert started["timeout_seconds"] == 1
    assert started["deadline"] > started["created_at"]
    run = await finished(rest, started["run_id"])
    assert (run["status"], run["error_message"]) == ("FAILED", "Run timed out after 1 s")
    step = (await steps_of(rest, run["run_id"]))["a"]
    assert (step["status"], step["error_message"]) == ("FAILED", "Run timed out after 1 s")
    logs = assert_plain_json(await rest.get(f"/api/v1/runs/{run['run_id']}/logs"), 200)["logs"]
    assert logs[-1]["message"] == "Run timed out after 1 s"
    assert logs[-1]["level"] == "error"


async def test_a_paused_run_still_times_out(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    body = {"name": "held", "start_step": "a", "steps": {"a": nap(200, next_step="b"), "b": nap(1)}}
    workflow_id = await workflow(rest, body)
    run_id = (await execute(rest, workflow_id, timeout_seconds=2))["run_id"]
    assert_plain_json(await rest.post(f"/api/v1/runs/{run_id}/pause", json={}), 200)
    run = await finished(rest, run_id)  # timed out by the reconciler: nobody drives it
    assert (run["status"], run["error_message"]) == ("FAILED", "Run timed out after 2 s")
    assert (await steps_of(rest, run_id))["b"]["status"] == "PENDING"


async def test_wait_for_completion_answers_with_the_finished_run(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    workflow_id = await workflow(rest, {"name": "w", "start_step": "a", "steps": {"a": nap(10)}})
    response = await rest.post(
        f"/api/v1/workflows/{workflow_id}/execute",
        json={
            "input_data": {"x": 1},
            "execution_options": {"timeout_seconds": 30, "wait_for_completion": True},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "COMPLETED"

    bad = await rest.post(
        f"/api/v1/workflows/{workflow_id}/execute",
        json={"input_data": {}, "execution_options": {"timeout_seconds": 0}},
    )
    assert bad.status_code == 400
    assert list(error_of(bad)["fields"]) == ["execution_options.timeout_seconds"]


async def test_a_concurrency_limit_holds_across_two_workers_and_keeps_the_order(
    rest: httpx.AsyncClient,
    worker: Worker,
    database_url: str,
    redis_url: str,
    echo_agent_url: str,
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    worker_processes.append(worker_process(database_url, redis_url))
    await create_agent(rest, "echo", url=echo_agent_url)
    body = {
        "name": "narrow",
        "start_step": "a",
        "max_concurrent_runs": 2,
        "steps": {"a": nap(300)},
    }
    workflow_id = await workflow(rest, body)
    run_ids = [(await execute(rest, workflow_id))["run_id"] for _ in range(7)]

    most = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = assert_plain_json(
            await rest.get(f"/api/v1/runs?workflow_id={workflow_id}&page_size=100"), 200
        )
        statuses = [r["status"] for r in listed["items"]]
        most = max(most, statuses.count("RUNNING"))
        if statuses.count("COMPLETED") == len(run_ids):
            break
        await asyncio.sleep(0.02)
    assert most == 2
    starts = []
    for run_id in run_ids:
        steps = await steps_of(rest, run_id)
        assert steps["a"]["status"] == "COMPLETED"
        starts.append(steps["a"]["started_at"])
    # The first two are admitted at once, by either worker, in either order; the runs
    # that waited for room started in the order they were created.
    assert max(starts[:2]) <= min(starts[2:])
    assert starts[2:] == sorted(starts[2:])


async def test_limits_are_validated_and_can_be_lifted(rest: httpx.AsyncClient) -> None:
    await create_agent(rest, "echo")
    base = {"name": "w", "start_step": "a", "steps": {"a": {"agent_name": "echo"}}}
    refused = await rest.post("/api/v1/workflows", json={**base, "max_concurrent_runs": 0})
    assert refused.status_code == 400
    assert list(error_of(refused)["fields"]) == ["max_concurrent_runs"]
    slow_step = {"a": {"agent_name": "echo", "timeout_ms": 0}}
    refused = await rest.post("/api/v1/workflows", json={**base, "steps": slow_step})
    assert refused.status_code == 400
    assert list(error_of(refused)["fields"]) == ["steps.a.timeout_ms"]

    workflow_id = await workflow(rest, {**base, "max_concurrent_runs": 3})
    path = f"/api/v1/workflows/{workflow_id}"
    assert assert_plain_json(await rest.get(path), 200)["max_concurrent_runs"] == 3
    lifted = assert_plain_json(await rest.put(path, json={"max_concurrent_runs": 0}), 200)
    assert "max_concurrent_runs" not in lifted
    assert lifted["version"] == 1  # not a new version
