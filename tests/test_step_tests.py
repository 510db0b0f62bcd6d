"""Testing one step on its own through Envoy: a real A2A agent is called once, the
result is saved and listed, and no run is created."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from baton_server.executor.worker import Worker
from tests.rest_support import error_of
from tests.test_rest_api import assert_plain_json, create_agent

PIPELINE: dict[str, Any] = {
    "name": "pipeline",
    "start_step": "extract",
    "steps": {
        "extract": {
            "agent_name": "echo",
            "next_step": "summarize",
            "input_mapping": {"source": "${workflow.input.source}"},
        },
        "summarize": {
            "agent_name": "echo",
            "input_mapping": {
                "text": "${extract.output.source}",
                "style": "${workflow.input.style}",
                "note": "from ${workflow.input.source}",
            },
        },
    },
}


async def pipeline(rest: httpx.AsyncClient, agent_url: str) -> str:
    await create_agent(rest, "echo", url=agent_url)
    created = assert_plain_json(await rest.post("/api/v1/workflows", json=PIPELINE), 201)
    return str(created["id"])


async def test_a_step_test_answers_the_agents_output_without_a_run(
    rest: httpx.AsyncClient, echo_agent_url: str
) -> None:
    workflow_id = await pipeline(rest, echo_agent_url)
    path = f"/api/v1/workflows/{workflow_id}/steps/summarize"
    tested = assert_plain_json(
        await rest.post(
            f"{path}/test",
            json={
                "input_data": {"source": "s3://bucket", "style": "short"},
                "step_outputs": {"extract": {"source": "raw text"}},
            },
        ),
        200,
    )
    expected_input = {"text": "raw text", "style": "short", "note": "from s3://bucket"}
    assert tested["input"] == expected_input
    assert tested["output"]["text"] == "raw text"
    assert tested["output"]["echo"] is True
    assert (tested["status"], tested["agent_name"], tested["workflow_version"]) == (
        "completed",
        "echo",
        1,
    )
    assert int(tested["duration_ms"]) >= 0
    assert "error_message" not in tested

    listed = assert_plain_json(await rest.get(f"{path}/tests"), 200)
    assert [t["id"] for t in listed["items"]] == [tested["id"]]
    assert listed["items"][0]["input"] == expected_input
    runs = assert_plain_json(await rest.get("/api/v1/runs"), 200)
    assert runs["total"] == 0  # never counted as a run


async def test_outputs_can_come_from_an_earlier_run(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    workflow_id = await pipeline(rest, echo_agent_url)
    run = assert_plain_json(
        await rest.post(
            f"/api/v1/workflows/{workflow_id}/execute",
            json={"input_data": {"source": "db", "style": "long"}, "wait_timeout": "30s"},
        ),
        200,
    )
    assert run["status"] == "COMPLETED"
    tested = assert_plain_json(
        await rest.post(
            f"/api/v1/workflows/{workflow_id}/steps/summarize/test",
            json={"from_run_id": run["run_id"], "step_outputs": {}},
        ),
        200,
    )
    assert tested["input"] == {"text": "db", "style": "long", "note": "from db"}
    # The given input and outputs win over the run's.
    overridden = assert_plain_json(
        await rest.post(
            f"/api/v1/workflows/{workflow_id}/steps/summarize/test",
            json={
                "from_run_id": run["run_id"],
                "input_data": {"source": "api", "style": "terse"},
                "step_outputs": {"extract": {"source": "given"}},
            },
        ),
        200,
    )
    assert overridden["input"] == {"text": "given", "style": "terse", "note": "from api"}
    runs = assert_plain_json(await rest.get("/api/v1/runs"), 200)
    assert runs["total"] == 1


async def test_an_agent_error_is_a_failed_test_and_bad_requests_name_the_field(
    rest: httpx.AsyncClient, echo_agent_url: str
) -> None:
    workflow_id = await pipeline(rest, echo_agent_url)
    base = f"/api/v1/workflows/{workflow_id}/steps"
    # A version whose first step makes the agent fail.
    failing = {**PIPELINE["steps"]["extract"], "input_mapping": {"_mode": "fail"}}
    body = {"steps": {**PIPELINE["steps"], "extract": failing}}
    assert (await rest.put(f"/api/v1/workflows/{workflow_id}", json=body)).status_code == 200
    failed = assert_plain_json(await rest.post(f"{base}/extract/test", json={}), 200)
    assert failed["status"] == "failed"
    assert "intentional failure" in failed["error_message"]
    assert "output" not in failed
    assert failed["workflow_version"] == 2

    unresolved = await rest.post(
        f"{base}/summarize/test", json={"input_data": {"source": "x", "style": "x"}}
    )
    assert unresolved.status_code == 400
    error = error_of(unresolved)
    assert error["reason"] == "STEP_INPUT_UNRESOLVED"
    assert list(error["fields"]) == ["step_outputs"]
    assert "extract" in error["fields"]["step_outputs"]

    missing = await rest.post(f"{base}/nope/test", json={})
    assert missing.status_code == 404
    assert error_of(missing)["reason"] == "STEP_NOT_FOUND"
    unknown = await rest.post(f"/api/v1/workflows/{uuid.uuid4()}/steps/extract/test", json={})
    assert unknown.status_code == 404
    no_run = await rest.post(f"{base}/extract/test", json={"from_run_id": "run-nope"})
    assert no_run.status_code == 404
    assert error_of(no_run)["reason"] == "RUN_NOT_FOUND"
