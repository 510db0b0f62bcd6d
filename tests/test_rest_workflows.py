"""The REST guide's "Common Workflows" 1-4, end to end over REST: a real Envoy, a worker,
and a real A2A echo agent standing in for the guide's extractor, transformer, ..."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from baton_server.executor.worker import Worker
from tests.test_rest_api import assert_plain_json

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
# Common Workflow 1's workflow, as the guide writes it.
PIPELINE: dict[str, Any] = {
    "name": "data-pipeline",
    "description": "ETL pipeline",
    "start_step": "extract",
    "steps": {
        "extract": {
            "id": "extract",
            "agent_name": "DataExtractorAgent",
            "next_step": "transform",
            "input_mapping": {"source": "${workflow.input.source}"},
        },
        "transform": {
            "id": "transform",
            "agent_name": "DataTransformerAgent",
            "next_step": None,
            "input_mapping": {"data": "${extract.output.data}"},
        },
    },
}


async def create_agents(rest: httpx.AsyncClient, url: str, *names: str, **fields: Any) -> None:
    for name in names:
        body = {"name": name, "url": url, "description": f"{name} (echo)", **fields}
        assert_plain_json(await rest.post("/api/v1/agents", json=body), 201)


async def wait_until(
    rest: httpx.AsyncClient, run_id: str, statuses: set[str], within: float = 30.0
) -> dict[str, Any]:
    """Poll GET /api/v1/runs/{run_id} (the guide's step "Monitor execution")."""
    deadline = time.monotonic() + within
    while True:
        run: dict[str, Any] = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}"), 200)
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, f"run still {run['status']}"
        await asyncio.sleep(0.05)


async def test_1_complete_setup_and_execution(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agents(rest, echo_agent_url, "DataExtractorAgent", "DataTransformerAgent")
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=PIPELINE), 201)
    run = assert_plain_json(
        await rest.post(
            f"/api/v1/workflows/{workflow['id']}/execute",
            json={"input_data": {"source": "https://api.example.com/data"}},
        ),
        202,
    )
    assert run["status"] == "PENDING"

    finished = await wait_until(rest, run["run_id"], TERMINAL)
    assert finished["status"] == "COMPLETED"
    assert finished["progress"] == 100
    assert "completed_at" in finished

    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run['run_id']}/steps"), 200)
    assert [(s["step_id"], s["status"]) for s in steps] == [
        ("extract", "COMPLETED"),
        ("transform", "COMPLETED"),
    ]
    extract, transform = steps
    assert extract["input_data"] == {"source": "https://api.example.com/data"}
    # The echo agent returns its input under "data": transform got extract's output.data.
    assert transform["input_data"] == {"data": {"source": "https://api.example.com/data"}}
    assert extract["started_at"] <= extract["completed_at"] <= transform["started_at"]


async def test_2_monitor_and_retry_failed_runs(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    # The extractor fails once (and is not retried by Baton), then works.
    await create_agents(
        rest,
        echo_agent_url,
        "DataExtractorAgent",
        "DataTransformerAgent",
        retry_config={"max_retries": 0},
    )
    pipeline = {**PIPELINE, "steps": dict(PIPELINE["steps"])}
    pipeline["steps"]["extract"] = {
        **PIPELINE["steps"]["extract"],
        "input_mapping": {"_mode": "flaky", "_fail_times": 1, "_key": str(uuid.uuid4())},
    }
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=pipeline), 201)
    run_id = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow['id']}/execute", json={"input_data": {}}),
        202,
    )["run_id"]
    await wait_until(rest, run_id, TERMINAL)

    # Step 1: list failed runs.
    failed = assert_plain_json(
        await rest.get("/api/v1/runs?status=FAILED&sort_by=created_at&sort_order=desc"), 200
    )
    listed = {r["run_id"]: r for r in failed["items"]}
    assert listed[run_id]["workflow_name"] == "data-pipeline"
    assert "extract" in listed[run_id]["error_message"]
    # Step 2-3: the run, and its steps to find the failure point.
    assert assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}"), 200)["status"] == "FAILED"
    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
    by_id = {s["step_id"]: s for s in steps}
    assert by_id["extract"]["status"] == "FAILED"
    assert "intentional failure" in by_id["extract"]["error_message"]
    assert by_id["transform"]["status"] == "PENDING"
    # Step 4-5: retry, and follow it to the end.
    retried = assert_plain_json(await rest.post(f"/api/v1/runs/{run_id}/retry", json={}), 202)
    assert retried["status"] == "PENDING"
    assert (await wait_until(rest, run_id, {"COMPLETED", "FAILED"}))["status"] == "COMPLETED"


async def test_3_update_workflow_version(rest: httpx.AsyncClient, echo_agent_url: str) -> None:
    await create_agents(
        rest, echo_agent_url, "DataExtractorAgent", "DataValidatorAgent", "DataTransformerAgent"
    )
    workflow_id = assert_plain_json(await rest.post("/api/v1/workflows", json=PIPELINE), 201)["id"]
    current = assert_plain_json(await rest.get(f"/api/v1/workflows/{workflow_id}"), 200)
    assert (current["name"], current["version"], current["status"]) == (
        "data-pipeline",
        1,
        "active",
    )

    update = {
        "description": "Updated ETL pipeline with validation step",
        "steps": {
            "extract": {
                "id": "extract",
                "agent_name": "DataExtractorAgent",
                "next_step": "validate",
                "input_mapping": {"source": "${workflow.input.source}"},
            },
            "validate": {
                "id": "validate",
                "agent_name": "DataValidatorAgent",
                "next_step": "transform",
                "input_mapping": {"data": "${extract.output.data}"},
            },
            "transform": {
                "id": "transform",
                "agent_name": "DataTransformerAgent",
                "next_step": None,
                "input_mapping": {"data": "${validate.output.validated_data}"},
            },
        },
    }
    updated = assert_plain_json(
        await rest.put(f"/api/v1/workflows/{workflow_id}", json=update), 200
    )
    assert (updated["name"], updated["version"], updated["status"]) == (
        "data-pipeline",
        2,
        "active",
    )
    assert set(updated["workflow_data"]["steps"]) == {"extract", "validate", "transform"}

    versions = assert_plain_json(await rest.get(f"/api/v1/workflows/{workflow_id}/versions"), 200)
    assert [(v["version"], v["status"]) for v in versions["items"]] == [
        (2, "active"),
        (1, "inactive"),
    ]
    assert all("created_at" in v for v in versions["items"])


async def test_4_cancel_long_running_workflow(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agents(rest, echo_agent_url, "DataExtractorAgent", "DataTransformerAgent")
    pipeline = {**PIPELINE, "steps": dict(PIPELINE["steps"])}
    pipeline["steps"]["extract"] = {
        **PIPELINE["steps"]["extract"],
        "input_mapping": {"_mode": "sleep", "_sleep_ms": 60_000},  # a large dataset
    }
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=pipeline), 201)
    run_id = assert_plain_json(
        await rest.post(
            f"/api/v1/workflows/{workflow['id']}/execute",
            json={"input_data": {"source": "https://api.example.com/large-dataset"}},
        ),
        202,
    )["run_id"]
    assert (await wait_until(rest, run_id, {"RUNNING"}))["status"] == "RUNNING"

    started = time.monotonic()
    cancelled = assert_plain_json(
        await rest.post(
            f"/api/v1/runs/{run_id}/cancel",
            json={"reason": "Dataset too large, need to optimize first"},
        ),
        200,
    )
    assert cancelled["status"] == "CANCELLED"
    assert "cancelled_at" in cancelled
    assert cancelled["error_message"] == "Cancelled: Dataset too large, need to optimize first"

    verified = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}"), 200)
    assert (verified["status"], verified["cancelled_by"]) == ("CANCELLED", "system")
    assert verified["cancelled_at"] == cancelled["cancelled_at"]
    # No further step starts, and the call in flight was abandoned long before 60 s.
    await asyncio.sleep(0.3)
    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
    by_id = {s["step_id"]: s for s in steps}
    assert by_id["transform"]["status"] == "PENDING"
    assert by_id["extract"]["status"] != "COMPLETED"
    assert time.monotonic() - started < 10
