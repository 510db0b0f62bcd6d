"""The REST guide's curl examples, run unchanged (tests/rest_guide_examples.md) with bash,
curl and jq against a real Envoy: only the base URL and the guide's placeholder ids are
replaced, by the test's Envoy and by resources the test created."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest

from baton_server.executor.worker import Worker
from tests.test_rest_api import assert_plain_json
from tests.test_rest_workflows import PIPELINE, create_agents, wait_until

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("jq")),
    reason="the guide's examples need bash, curl and jq",
)

GUIDE = Path(__file__).with_name("rest_guide_examples.md")
GUIDE_URL = "http://localhost:8000"
AGENT_ID = "123e4567-e89b-12d3-a456-426614174000"
WORKFLOW_ID = "456e7890-e89b-12d3-a456-426614174000"
RUN_ID = "run-789e0123-e89b-12d3-a456-426614174000"
# The guide polls every 5 or 10 seconds; its loops work the same with a shorter sleep.
FAST_SLEEP = "sleep() { command sleep 0.1; }\n"
# Prints each response's status code on a line of its own after its body.
CURL_WITH_STATUS = (
    "curl() { command curl --silent --show-error --write-out '\\n%{http_code}' \"$@\"; }\n"
)


@cache
def examples() -> dict[str, str]:
    return dict(re.findall(r"## (.+?)\n\n```bash\n(.*?\n)```", GUIDE.read_text(), re.S))


async def bash(
    script: str, base_url: str, ids: dict[str, str] | None = None, *, prologue: str = ""
) -> str:
    """Run a guide script; returns its standard output (fails on a non-zero exit)."""
    for placeholder, real in (ids or {}).items():
        script = script.replace(placeholder, real)
    script = script.replace(GUIDE_URL, base_url)
    # Asynchronously: the server under test runs in this event loop.
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        prologue + script,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def example(title: str, base_url: str, **ids: str) -> tuple[int, Any]:
    """Run one single-request example; returns (status, JSON body or text)."""
    placeholders = {"agent": AGENT_ID, "workflow": WORKFLOW_ID, "run": RUN_ID}
    output = await bash(
        examples()[title],
        base_url,
        {placeholders[kind]: value for kind, value in ids.items()},
        prologue=CURL_WITH_STATUS,
    )
    body, _, status = output.rpartition("\n")
    try:
        return int(status), json.loads(body)
    except json.JSONDecodeError:
        return int(status), body


async def test_every_endpoint_example_answers_as_documented(
    rest: httpx.AsyncClient, rest_url: str
) -> None:
    await create_agents(rest, "http://elsewhere:8080", "DataExtractorAgent", "DataTransformerAgent")

    async def run(title: str, status: int, **ids: str) -> Any:
        got, body = await example(title, rest_url, **ids)
        assert got == status, f"{title}: {got} {body}"
        return body

    # Agent Management.
    agent_id = (await run("Create Agent", 201))["id"]
    listed = await run("List Agents", 200)
    assert "data-processor" in {a["name"] for a in listed["items"]}
    assert (await run("Get Agent", 200, agent=agent_id))["name"] == "data-processor"
    updated = await run("Update Agent", 200, agent=agent_id)
    assert (updated["description"], updated["timeout_ms"]) == ("Updated description", 60000)
    spare = assert_plain_json(
        await rest.post("/api/v1/agents", json={"name": "spare", "url": "http://spare:1"}), 201
    )
    deleted = await run("Delete Agent", 200, agent=spare["id"])
    assert deleted == {"message": f"Agent '{spare['id']}' deleted successfully"}
    health = await run("Check Agent Health", 200, agent=agent_id)
    assert health["healthy"] is False

    # Workflow Management and Execution.
    workflow_id = (await run("Create Workflow", 201))["id"]
    assert (await run("List Workflows", 200))["total"] == 1
    assert (await run("Get Workflow", 200, workflow=workflow_id))["version"] == 1
    assert (await run("Update Workflow", 200, workflow=workflow_id))["status"] == "active"
    spare_workflow = assert_plain_json(
        await rest.post("/api/v1/workflows", json={**PIPELINE, "name": "spare"}), 201
    )
    await run("Delete Workflow", 200, workflow=spare_workflow["id"])
    versions = await run("Get Workflow Versions", 200, workflow=workflow_id)
    assert [v["version"] for v in versions["items"]] == [1]
    run_id = (await run("Execute Workflow", 202, workflow=workflow_id))["run_id"]

    # Run Monitoring (no worker runs here: the run stays PENDING).
    assert (await run("List Runs", 200))["items"] == []
    assert (await run("Get Run", 200, run=run_id))["status"] == "PENDING"
    steps = await run("Get Run Steps", 200, run=run_id)
    assert [s["step_id"] for s in steps] == ["extract", "transform"]
    other = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow_id}/execute", json={}), 202
    )
    await rest.post(f"/api/v1/runs/{other['run_id']}/cancel", json={})
    assert (await run("Retry Run", 202, run=other["run_id"]))["status"] == "PENDING"
    cancelled = await run("Cancel Run", 200, run=run_id)
    assert cancelled["error_message"] == "Cancelled: Incorrect input data provided"
    # The guide's placeholder answers 501; Baton returns the log (docs/rest.md).
    assert (await run("Get Run Logs", 200, run=run_id))["logs"]

    # System & Health.
    assert (await run("Basic Health Check", 200))["status"] == "healthy"
    assert (await run("Readiness Check", 200))["ready"] is True
    assert "baton_rpc_requests_total" in await run("Prometheus Metrics", 200)


async def test_common_workflow_1_complete_setup_and_execution(
    rest: httpx.AsyncClient, rest_url: str, worker: Worker
) -> None:
    # The guide's agents (http://extractor:8080, ...) do not exist: the run fails after
    # the default retries, and the script follows it to the end all the same.
    output = await bash(
        examples()["Workflow 1: Complete Setup and Execution"], rest_url, prologue=FAST_SLEEP
    )
    assert re.search(r"Created agents: [0-9a-f-]{36}, [0-9a-f-]{36}\n", output), output
    assert re.search(r"Created workflow: [0-9a-f-]{36}\n", output), output
    run_id = re.search(r"Started run: (run-[0-9a-f-]{36})\n", output)
    assert run_id, output
    assert "Run status: FAILED" in output
    steps = json.loads(output[output.rindex("Run status: FAILED") + len("Run status: FAILED") :])
    assert [(s["step_id"], s["status"]) for s in steps] == [
        ("extract", "FAILED"),
        ("transform", "PENDING"),
    ]


async def test_common_workflow_2_monitor_and_retry_failed_runs(
    rest: httpx.AsyncClient, rest_url: str, worker: Worker, echo_agent_url: str
) -> None:
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
    run = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow['id']}/execute", json={}), 202
    )
    await wait_until(rest, run["run_id"], {"FAILED"})

    output = await bash(
        examples()["Workflow 2: Monitor and Retry Failed Runs"],
        rest_url,
        {RUN_ID: run["run_id"]},
        prologue=FAST_SLEEP,
    )
    assert run["run_id"] in output
    assert '"status": "FAILED"' in output  # the failed step, found in step 3
    assert output.rstrip().endswith("Retry status: COMPLETED"), output


async def test_common_workflow_3_update_workflow_version(
    rest: httpx.AsyncClient, rest_url: str
) -> None:
    await create_agents(
        rest,
        "http://elsewhere:8080",
        "DataExtractorAgent",
        "DataValidatorAgent",
        "DataTransformerAgent",
    )
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=PIPELINE), 201)
    output = await bash(
        examples()["Workflow 3: Update Workflow Version"], rest_url, {WORKFLOW_ID: workflow["id"]}
    )
    documents = [json.loads(part) for part in re.findall(r"^\{\n.*?^\}$", output, re.S | re.M)]
    current, updated, *versions = documents
    assert current == {"name": "data-pipeline", "version": 1, "status": "active"}
    assert updated == {"name": "data-pipeline", "version": 2, "status": "active"}
    assert [(v["version"], v["status"]) for v in versions] == [(2, "active"), (1, "inactive")]


async def test_common_workflow_4_cancel_long_running_workflow(
    rest: httpx.AsyncClient, rest_url: str
) -> None:
    await create_agents(rest, "http://elsewhere:8080", "DataExtractorAgent", "DataTransformerAgent")
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=PIPELINE), 201)
    # No worker: the run is still PENDING when the script looks, so it cancels it.
    output = await bash(
        examples()["Workflow 4: Cancel Long-Running Workflow"],
        rest_url,
        {WORKFLOW_ID: workflow["id"]},
        prologue=FAST_SLEEP,
    )
    assert "Current status: PENDING" in output
    assert "Cancelling run..." in output
    final = json.loads(output[output.rindex("{") :])
    assert final["status"] == "CANCELLED"
    assert final["cancelled_by"] == "system"
    assert final["error_message"] == "Cancelled: Dataset too large, need to optimize first"


async def test_common_workflow_5_health_check_all_agents(
    rest: httpx.AsyncClient, rest_url: str, echo_agent_url: str
) -> None:
    await create_agents(rest, echo_agent_url, "echo")
    await create_agents(rest, "http://127.0.0.1:9", "dead", timeout_ms=2000)
    output = await bash(examples()["Workflow 5: Health Check All Agents"], rest_url)
    assert re.search(r"✓ echo is healthy \([0-9.]+ms\)", output), output
    assert "✗ dead is unhealthy: " in output
