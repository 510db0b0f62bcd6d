"""Wait steps and signals through Envoy, with real workers and a real A2A agent: a run
waits for an approval holding no worker, survives a killed worker, and completes with
the signal's payload; timeouts do what the step declares."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from typing import Any

import httpx

from baton_server.executor.worker import Worker
from tests.rest_support import error_of
from tests.runs_support import worker_process
from tests.test_rest_api import assert_plain_json, create_agent


def approval_flow(**wait: Any) -> dict[str, Any]:
    """draft -> approve (waits for `approval`) -> publish (reads the approval)."""
    return {
        "name": "approval",
        "start_step": "draft",
        "steps": {
            "draft": {"agent_name": "echo", "next_step": "approve", "input_mapping": {"t": 1}},
            "approve": {"wait": {"signal": "approval", **wait}, "next_step": "publish"},
            "publish": {
                "agent_name": "echo",
                "input_mapping": {"approved_by": "${approve.output.by}"},
            },
        },
    }


async def start(rest: httpx.AsyncClient, agent_url: str, **wait: Any) -> str:
    await create_agent(rest, "echo", url=agent_url)
    workflow = assert_plain_json(
        await rest.post("/api/v1/workflows", json=approval_flow(**wait)), 201
    )
    run = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow['id']}/execute", json={"input_data": {}}),
        202,
    )
    return str(run["run_id"])


async def step_status(rest: httpx.AsyncClient, run_id: str, step_id: str) -> str:
    step = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps/{step_id}"), 200)
    status: str = step["status"]
    return status


async def until_status(rest: httpx.AsyncClient, run_id: str, step_id: str, wanted: str) -> None:
    deadline = time.monotonic() + 30
    while await step_status(rest, run_id, step_id) != wanted:
        assert time.monotonic() < deadline, f"{step_id} never became {wanted}"
        await asyncio.sleep(0.05)


async def finished(rest: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = assert_plain_json(
        await rest.get(f"/api/v1/runs/{run_id}/wait?timeout=60s"), 200
    )
    return run


async def send(rest: httpx.AsyncClient, run_id: str, name: str, payload: Any) -> httpx.Response:
    return await rest.post(f"/api/v1/runs/{run_id}/signals/{name}", json={"payload": payload})


async def test_a_wait_step_completes_with_the_signal_payload_holding_no_worker(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    run_id = await start(rest, echo_agent_url)
    await until_status(rest, run_id, "approve", "WAITING")
    deadline = time.monotonic() + 10
    while worker.running:  # the worker gave the run back
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    run = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}"), 200)
    assert run["status"] == "RUNNING"
    assert await step_status(rest, run_id, "publish") == "PENDING"

    sent = assert_plain_json(await send(rest, run_id, "approval", {"by": "ana"}), 200)
    assert (sent["run_id"], sent["name"], sent.get("duplicate", False)) == (
        run_id,
        "approval",
        False,
    )
    done = await finished(rest, run_id)
    assert done["status"] == "COMPLETED"
    assert done["output"]["approved_by"] == "ana"
    approve = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps/approve"), 200)
    assert (approve["status"], approve["output_data"]) == ("COMPLETED", {"by": "ana"})

    # Idempotent: the same signal again changes nothing.
    again = assert_plain_json(await send(rest, run_id, "approval", {"by": "bob"}), 200)
    assert again["duplicate"] is True
    assert again["received_at"] == sent["received_at"]
    logs = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/logs"), 200)["logs"]
    messages = [line["message"] for line in logs]
    assert "Step 'approve' waiting for signal 'approval'" in messages
    assert sum(m.startswith("Signal 'approval' received") for m in messages) == 1
    assert any("gave it back" in m for m in messages)


async def test_a_signal_sent_before_the_step_waits_counts(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    body = approval_flow()
    body["steps"]["draft"]["input_mapping"] = {"_mode": "sleep", "_sleep_ms": 400}
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    run = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow['id']}/execute", json={"input_data": {}}),
        202,
    )
    assert_plain_json(await send(rest, run["run_id"], "approval", {"by": "early"}), 200)
    done = await finished(rest, run["run_id"])
    assert (done["status"], done["output"]["approved_by"]) == ("COMPLETED", "early")


async def test_timeouts_fail_or_continue_as_declared(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    failing = await start(rest, echo_agent_url, timeout_seconds=1)
    done = await finished(rest, failing)
    assert done["status"] == "FAILED"
    assert done["error_message"] == "Step 'approve' failed: Waited 1 s for signal 'approval'"

    body = approval_flow(timeout_seconds=1, on_timeout="continue", timeout_output={"by": "nobody"})
    body["name"] = "lenient"
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    run = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow['id']}/execute", json={"input_data": {}}),
        202,
    )
    done = await finished(rest, run["run_id"])
    assert (done["status"], done["output"]["approved_by"]) == ("COMPLETED", "nobody")


async def test_bad_signals_and_wait_steps_are_refused(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    run_id = await start(rest, echo_agent_url, timeout_seconds=1)
    bad_name = await send(rest, run_id, "no spaces", {})
    assert bad_name.status_code in (400, 404)
    unknown = await send(rest, "run-nope", "approval", {})
    assert unknown.status_code == 404
    await finished(rest, run_id)
    late = await send(rest, run_id, "approval", {})
    assert late.status_code == 400
    assert error_of(late)["reason"] == "RUN_FINISHED"

    both = approval_flow()
    both["steps"]["approve"]["agent_name"] = "echo"
    refused = await rest.post("/api/v1/workflows", json={**both, "name": "both"})
    assert refused.status_code == 400
    assert error_of(refused)["reason"] == "WORKFLOW_INVALID_STEP"
    assert list(error_of(refused)["fields"]) == ["steps.approve.agent_name"]
    neither = {"name": "neither", "start_step": "a", "steps": {"a": {}}}
    refused = await rest.post("/api/v1/workflows", json=neither)
    assert refused.status_code == 400
    assert list(error_of(refused)["fields"]) == ["steps.a.agent_name"]


async def test_a_killed_worker_while_waiting_loses_nothing(
    rest: httpx.AsyncClient,
    database_url: str,
    redis_url: str,
    echo_agent_url: str,
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    first = worker_process(database_url, redis_url)
    worker_processes.append(first)
    await create_agent(rest, "echo", url=echo_agent_url)
    body = approval_flow()
    # A slow parallel branch keeps the run held by the worker while the step waits.
    body["steps"]["slow"] = {
        "agent_name": "echo",
        "depends_on": ["draft"],
        "input_mapping": {"_mode": "sleep", "_sleep_ms": 1500},
    }
    body["steps"]["publish"]["depends_on"] = ["slow"]
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    run = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow['id']}/execute", json={"input_data": {}}),
        202,
    )
    run_id = run["run_id"]
    await until_status(rest, run_id, "approve", "WAITING")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    assert_plain_json(await send(rest, run_id, "approval", {"by": "after-crash"}), 200)
    worker_processes.append(worker_process(database_url, redis_url))
    done = await finished(rest, run_id)
    assert (done["status"], done["output"]["approved_by"]) == ("COMPLETED", "after-crash")
    steps = {
        s["step_id"]: s
        for s in assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
    }
    assert steps["draft"]["attempt"] == 1
    assert steps["approve"]["attempt"] == 1
    assert steps["slow"]["attempt"] == 2  # in flight at the kill
