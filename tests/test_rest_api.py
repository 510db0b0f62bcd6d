"""Every documented REST endpoint through a real Envoy: the REST guide's example bodies,
its status codes and JSON shapes, and JSON error bodies with ErrorInfo/BadRequest."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import baton_sdk
from baton.v1 import agents_pb2, agents_pb2_grpc
from baton_sdk import AlreadyExistsError, RunStatus
from baton_server.executor.worker import Worker
from tests.agents.process import unused_loopback_port
from tests.rest_support import echo_workflow, error_of, start_envoy
from tests.rpc_errors import failure
from tests.sdk_support import linear_workflow

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

# Request bodies as the REST guide writes them.
GUIDE_AGENT = {
    "name": "data-processor",
    "url": "http://data-processor:8080",
    "description": "Processes data transformations",
    "timeout_ms": 60000,
}
GUIDE_AGENT_FULL = {
    "name": "data-processor",
    "url": "http://data-processor:8080",
    "description": "Processes data transformations",
    "auth_type": "bearer",
    "auth_config": {"token": "secret-token-123"},
    "timeout_ms": 30000,
    "retry_config": {
        "max_retries": 3,
        "initial_delay_ms": 1000,
        "max_delay_ms": 30000,
        "backoff_multiplier": 2.0,
    },
}
GUIDE_AGENT_UPDATE = {
    "url": "http://new-url:8080",
    "description": "Updated description",
    "auth_type": "apikey",
    "auth_config": {"key": "new-api-key"},
    "timeout_ms": 60000,
    "retry_config": {"max_retries": 5},
    "status": "inactive",
}
GUIDE_WORKFLOW: dict[str, Any] = {
    "name": "data-processing-pipeline",
    "description": "ETL pipeline for data processing",
    "start_step": "extract",
    "steps": {
        "extract": {
            "id": "extract",
            "agent_name": "DataExtractorAgent",
            "next_step": "transform",
            "input_mapping": {"source_url": "${workflow.input.data_source}"},
        },
        "transform": {
            "id": "transform",
            "agent_name": "DataTransformerAgent",
            "next_step": None,
            "input_mapping": {"raw_data": "${extract.output.data}"},
        },
    },
}
GUIDE_INPUT = {"input_data": {"data_source": "https://api.example.com/data", "format": "json"}}
AGENT_FIELDS = {
    "id",
    "name",
    "url",
    "description",
    "auth_type",
    "timeout_ms",
    "retry_config",
    "status",
    "created_at",
    "updated_at",
}
RUN_FIELDS = {
    "id",
    "run_id",
    "workflow_id",
    "workflow_name",
    "workflow_definition_id",
    "status",
    "input_data",
    "triggered_by",
    "created_at",
    "updated_at",
}
STEP_FIELDS = {"id", "run_id", "step_id", "step_name", "agent_name", "status"}


def assert_plain_json(response: httpx.Response, status: int) -> Any:
    """The status, a JSON body, and no gRPC leftovers among the headers."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    leftovers = {h for h in response.headers if h.startswith(("grpc-", "x-http-code", "x-baton"))}
    assert not leftovers, leftovers
    return response.json()


async def create_agent(rest: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "url": f"http://{name.lower()}:8080", **fields}
    created: dict[str, Any] = assert_plain_json(await rest.post("/api/v1/agents", json=body), 201)
    return created


async def create_guide_workflow(rest: httpx.AsyncClient) -> dict[str, Any]:
    await create_agent(rest, "DataExtractorAgent")
    await create_agent(rest, "DataTransformerAgent")
    created: dict[str, Any] = assert_plain_json(
        await rest.post("/api/v1/workflows", json=GUIDE_WORKFLOW), 201
    )
    return created


async def start_run(rest: httpx.AsyncClient) -> dict[str, Any]:
    workflow = await create_guide_workflow(rest)
    run: dict[str, Any] = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow['id']}/execute", json=GUIDE_INPUT), 202
    )
    return run


# --- agents ----------------------------------------------------------------------------


async def test_create_agent_is_201_with_the_documented_body(rest: httpx.AsyncClient) -> None:
    agent = assert_plain_json(await rest.post("/api/v1/agents", json=GUIDE_AGENT), 201)
    assert agent.keys() >= AGENT_FIELDS
    uuid.UUID(agent["id"])
    assert {k: agent[k] for k in ("name", "url", "description", "auth_type", "timeout_ms")} == {
        **{k: GUIDE_AGENT[k] for k in ("name", "url", "description", "timeout_ms")},
        "auth_type": "none",
    }
    assert agent["retry_config"] == {
        "max_retries": 3,
        "initial_delay_ms": 1000,
        "max_delay_ms": 30000,
        "backoff_multiplier": 2,
    }
    assert agent["status"] == "active"
    assert RFC3339.match(agent["created_at"])
    assert RFC3339.match(agent["updated_at"])


async def test_create_agent_with_auth_and_retry_config_never_returns_the_secret(
    rest: httpx.AsyncClient,
) -> None:
    agent = assert_plain_json(await rest.post("/api/v1/agents", json=GUIDE_AGENT_FULL), 201)
    assert agent["auth_type"] == "bearer"
    assert agent["retry_config"]["max_retries"] == 3
    assert "auth_config" not in agent
    fetched = assert_plain_json(await rest.get(f"/api/v1/agents/{agent['id']}"), 200)
    assert "auth_config" not in fetched
    assert "secret-token-123" not in (await rest.get("/api/v1/agents")).text


async def test_duplicate_agent_name_is_409(rest: httpx.AsyncClient) -> None:
    await create_agent(rest, "data-processor")
    response = await rest.post("/api/v1/agents", json=GUIDE_AGENT)
    assert response.status_code == 409
    error = error_of(response)
    assert (error["code"], error["reason"]) == (6, "AGENT_NAME_TAKEN")
    assert error["metadata"] == {"name": "data-processor"}
    assert "data-processor" in error["message"]


async def test_invalid_fields_are_400_with_one_violation_per_field(
    rest: httpx.AsyncClient,
) -> None:
    response = await rest.post(
        "/api/v1/agents",
        json={"name": "", "url": "ftp://x", "timeout_ms": 5, "retry_config": {"max_retries": 11}},
    )
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["reason"]) == (3, "INVALID_FIELD")
    assert set(error["fields"]) == {"name", "url", "timeout_ms", "retry_config.max_retries"}


async def test_list_agents_filters_by_status_and_paginates(rest: httpx.AsyncClient) -> None:
    for name in ("a1", "a2", "a3"):
        await create_agent(rest, name)
    inactive = await create_agent(rest, "a4")
    assert_plain_json(
        await rest.put(f"/api/v1/agents/{inactive['id']}", json={"status": "inactive"}), 200
    )
    page = assert_plain_json(
        await rest.get("/api/v1/agents?page=1&page_size=20&status=active"), 200
    )
    assert {a["name"] for a in page["items"]} == {"a1", "a2", "a3"}
    assert (page["total"], page["page"], page["page_size"], page["total_pages"]) == (3, 1, 20, 1)
    second = assert_plain_json(await rest.get("/api/v1/agents?page=2&page_size=2"), 200)
    assert (len(second["items"]), second["total"], second["total_pages"]) == (2, 4, 2)
    named = assert_plain_json(await rest.get("/api/v1/agents?name=a2"), 200)
    assert [a["name"] for a in named["items"]] == ["a2"]


async def test_get_update_and_delete_an_agent(rest: httpx.AsyncClient) -> None:
    agent = assert_plain_json(await rest.post("/api/v1/agents", json=GUIDE_AGENT), 201)
    path = f"/api/v1/agents/{agent['id']}"
    assert assert_plain_json(await rest.get(path), 200) == agent

    updated = assert_plain_json(
        await rest.put(path, json={"description": "Updated description", "timeout_ms": 60000}),
        200,
    )
    assert (updated["description"], updated["url"]) == ("Updated description", GUIDE_AGENT["url"])
    updated = assert_plain_json(await rest.put(path, json=GUIDE_AGENT_UPDATE), 200)
    assert {k: updated[k] for k in ("url", "auth_type", "timeout_ms", "status")} == {
        "url": "http://new-url:8080",
        "auth_type": "apikey",
        "timeout_ms": 60000,
        "status": "inactive",
    }
    # Partial: retry_config merges field by field.
    assert updated["retry_config"] == {**agent["retry_config"], "max_retries": 5}

    deleted = assert_plain_json(await rest.delete(path), 200)
    assert deleted == {"message": f"Agent '{agent['id']}' deleted successfully"}
    assert assert_plain_json(await rest.get(path), 200)["status"] == "deleted"


async def test_unknown_agent_is_404_and_a_malformed_id_400(rest: httpx.AsyncClient) -> None:
    path = f"/api/v1/agents/{uuid.uuid4()}"
    for response in (
        await rest.get(path),
        await rest.put(path, json={"description": "x"}),
        await rest.delete(path),
        await rest.get(f"{path}/health"),
    ):
        assert response.status_code == 404
        assert error_of(response)["reason"] == "AGENT_NOT_FOUND"
    response = await rest.get("/api/v1/agents/not-a-uuid")
    assert response.status_code == 400
    assert error_of(response)["fields"].keys() == {"agent_id"}


async def test_agent_health_check(rest: httpx.AsyncClient, echo_agent_url: str) -> None:
    healthy = await create_agent(rest, "echo", url=echo_agent_url)
    report = assert_plain_json(await rest.get(f"/api/v1/agents/{healthy['id']}/health"), 200)
    assert (report["healthy"], report["status_code"]) == (True, 200)
    assert report["response_time_ms"] > 0
    assert "error" not in report

    dead = await create_agent(
        rest, "dead", url=f"http://127.0.0.1:{unused_loopback_port()}", timeout_ms=2000
    )
    report = assert_plain_json(await rest.get(f"/api/v1/agents/{dead['id']}/health"), 200)
    assert report["healthy"] is False
    assert report["error"]
    assert "status_code" not in report


# --- workflows -------------------------------------------------------------------------


async def test_create_workflow_is_201_with_the_documented_body(rest: httpx.AsyncClient) -> None:
    workflow = await create_guide_workflow(rest)
    uuid.UUID(workflow["id"])
    assert (workflow["name"], workflow["version"], workflow["status"]) == (
        "data-processing-pipeline",
        1,
        "active",
    )
    data = workflow["workflow_data"]
    assert data["start_step"] == "extract"
    assert data["steps"]["extract"]["next_step"] == "transform"
    assert data["steps"]["extract"]["input_mapping"] == {
        "source_url": "${workflow.input.data_source}"
    }
    assert "next_step" not in data["steps"]["transform"]  # null: a final step
    assert RFC3339.match(workflow["created_at"])


async def test_invalid_workflows_are_400_with_the_reason(rest: httpx.AsyncClient) -> None:
    response = await rest.post("/api/v1/workflows", json=GUIDE_WORKFLOW)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["reason"]) == (9, "AGENT_UNAVAILABLE")
    assert "steps.extract.agent_name" in error["fields"]

    await create_agent(rest, "A")
    cycle = {
        "name": "cycle",
        "start_step": "a",
        "steps": {
            "a": {"agent_name": "A", "next_step": "b", "input_mapping": {}},
            "b": {"agent_name": "A", "next_step": "a", "input_mapping": {}},
        },
    }
    response = await rest.post("/api/v1/workflows", json=cycle)
    assert response.status_code == 400
    assert error_of(response)["reason"] == "WORKFLOW_CYCLE"


async def test_list_workflows_filters_and_sorts(rest: httpx.AsyncClient) -> None:
    await create_agent(rest, "A")
    for name in ("zeta", "alpha", "mid"):
        body = {
            "name": name,
            "start_step": "s",
            "steps": {"s": {"agent_name": "A", "input_mapping": {}}},
        }
        assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    page = assert_plain_json(
        await rest.get(
            "/api/v1/workflows?page=1&page_size=20&status=active&sort_by=name&sort_order=asc"
        ),
        200,
    )
    assert [w["name"] for w in page["items"]] == ["alpha", "mid", "zeta"]
    assert (page["total"], page["total_pages"]) == (3, 1)


async def test_update_versions_and_delete_a_workflow(rest: httpx.AsyncClient) -> None:
    workflow = await create_guide_workflow(rest)
    path = f"/api/v1/workflows/{workflow['id']}"
    assert assert_plain_json(await rest.get(path), 200) == workflow

    same_graph = assert_plain_json(
        await rest.put(
            path, json={"description": "Updated ETL pipeline with validation", "status": "active"}
        ),
        200,
    )
    assert (same_graph["version"], same_graph["description"]) == (
        1,
        "Updated ETL pipeline with validation",
    )
    steps: dict[str, Any] = dict(GUIDE_WORKFLOW["steps"])
    steps["transform"] = {**steps["transform"], "input_mapping": {"raw": "${extract.output}"}}
    new_graph = assert_plain_json(await rest.put(path, json={"steps": steps}), 200)
    assert new_graph["version"] == 2

    versions = assert_plain_json(await rest.get(f"{path}/versions?page=1&page_size=10"), 200)
    assert [(v["version"], v["status"]) for v in versions["items"]] == [
        (2, "active"),
        (1, "inactive"),
    ]
    assert (versions["total"], versions["page_size"]) == (2, 10)

    deleted = assert_plain_json(await rest.delete(path), 200)
    assert deleted == {"message": f"Workflow '{workflow['id']}' deleted successfully"}
    assert assert_plain_json(await rest.get(path), 200)["status"] == "deleted"


async def test_activate_and_deactivate(rest: httpx.AsyncClient) -> None:
    workflow = await create_guide_workflow(rest)
    path = f"/api/v1/workflows/{workflow['id']}"
    assert assert_plain_json(await rest.post(f"{path}/deactivate", json={}), 200)["status"] == (
        "inactive"
    )
    assert assert_plain_json(await rest.post(f"{path}/activate"), 200)["status"] == "active"


async def test_unknown_workflow_is_404(rest: httpx.AsyncClient) -> None:
    path = f"/api/v1/workflows/{uuid.uuid4()}"
    for response in (
        await rest.get(path),
        await rest.put(path, json={"description": "x"}),
        await rest.delete(path),
        await rest.get(f"{path}/versions"),
        await rest.post(f"{path}/execute", json=GUIDE_INPUT),
    ):
        assert response.status_code == 404, response.text
        assert error_of(response)["reason"] == "WORKFLOW_NOT_FOUND"


# --- execution and runs ----------------------------------------------------------------


async def test_execute_is_202_with_a_pending_run(rest: httpx.AsyncClient) -> None:
    workflow = await create_guide_workflow(rest)
    run = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow['id']}/execute", json=GUIDE_INPUT), 202
    )
    assert run.keys() >= RUN_FIELDS
    assert run["id"] == run["run_id"]
    assert run["run_id"].startswith("run-")
    assert (run["workflow_id"], run["workflow_name"], run["workflow_definition_id"]) == (
        workflow["id"],
        workflow["name"],
        workflow["definition_id"],
    )
    assert (run["status"], run["triggered_by"]) == ("PENDING", "system")
    assert run["input_data"] == GUIDE_INPUT["input_data"]
    assert RFC3339.match(run["created_at"])
    for unset in ("completed_at", "cancelled_at", "cancelled_by", "error_message"):
        assert unset not in run


async def test_executing_an_inactive_workflow_is_400(rest: httpx.AsyncClient) -> None:
    workflow = await create_guide_workflow(rest)
    await rest.post(f"/api/v1/workflows/{workflow['id']}/deactivate", json={})
    response = await rest.post(f"/api/v1/workflows/{workflow['id']}/execute", json=GUIDE_INPUT)
    assert response.status_code == 400
    assert error_of(response)["reason"] == "WORKFLOW_NOT_ACTIVE"


async def test_list_runs_filters_and_sorts(rest: httpx.AsyncClient) -> None:
    first = await start_run(rest)
    second = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{first['workflow_id']}/execute", json=GUIDE_INPUT),
        202,
    )
    await rest.post(f"/api/v1/runs/{first['run_id']}/cancel", json={})

    def ids(page: dict[str, Any]) -> list[str]:
        return [r["run_id"] for r in page["items"]]

    listed = assert_plain_json(await rest.get("/api/v1/runs?page=1&page_size=50"), 200)
    assert ids(listed) == [second["run_id"], first["run_id"]]
    oldest_first = assert_plain_json(
        await rest.get("/api/v1/runs?sort_by=created_at&sort_order=asc"), 200
    )
    assert ids(oldest_first) == [first["run_id"], second["run_id"]]
    for status in ("CANCELLED", "cancelled"):
        cancelled = assert_plain_json(
            await rest.get(
                f"/api/v1/runs?status={status}&created_after=2024-01-01T00:00:00Z"
                "&sort_by=created_at&sort_order=desc"
            ),
            200,
        )
        assert ids(cancelled) == [first["run_id"]]
    later = assert_plain_json(
        await rest.get("/api/v1/runs?created_after=2999-01-01T00:00:00Z"), 200
    )
    assert (later["items"], later["total"], later["total_pages"]) == ([], 0, 0)
    by_workflow = assert_plain_json(
        await rest.get(f"/api/v1/runs?workflow_id={first['workflow_id']}"), 200
    )
    assert by_workflow["total"] == 2
    bad = await rest.get("/api/v1/runs?status=SOMETIMES")
    assert bad.status_code == 400
    assert error_of(bad)["code"] == 3


async def test_get_run_and_its_steps_as_a_bare_array(rest: httpx.AsyncClient) -> None:
    run = await start_run(rest)
    fetched = assert_plain_json(await rest.get(f"/api/v1/runs/{run['run_id']}"), 200)
    assert fetched["run_id"] == run["run_id"]
    assert fetched["progress"] == 0

    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run['run_id']}/steps"), 200)
    assert isinstance(steps, list)
    assert [s["step_id"] for s in steps] == ["extract", "transform"]
    for step in steps:
        assert step.keys() >= STEP_FIELDS
        assert (step["run_id"], step["status"]) == (run["run_id"], "PENDING")
        assert step["id"].startswith("step-exec-")
    assert steps[0]["agent_name"] == "DataExtractorAgent"


def _milliseconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000


async def test_runs_and_steps_carry_their_duration_once_they_end(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url)
    started = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow_id}/execute", json={}), 202
    )
    assert "duration_ms" not in started  # absent until the run ends
    path = f"/api/v1/runs/{started['run_id']}"
    run = assert_plain_json(await rest.get(f"{path}/wait?timeout=30s"), 200)
    assert run["status"] == "COMPLETED"
    # A JSON number: the whole milliseconds from creation to the end.
    assert isinstance(run["duration_ms"], int | float)
    assert abs(run["duration_ms"] - _milliseconds(run["created_at"], run["completed_at"])) <= 1
    (step,) = assert_plain_json(await rest.get(f"{path}/steps"), 200)
    assert abs(step["duration_ms"] - _milliseconds(step["started_at"], step["completed_at"])) <= 1


async def test_cancel_is_200_and_retry_202(rest: httpx.AsyncClient) -> None:
    run = await start_run(rest)  # no worker runs here: it stays PENDING
    path = f"/api/v1/runs/{run['run_id']}"
    cancelled = assert_plain_json(
        await rest.post(f"{path}/cancel", json={"reason": "Incorrect input data provided"}), 200
    )
    assert (cancelled["status"], cancelled["cancelled_by"], cancelled["error_message"]) == (
        "CANCELLED",
        "system",
        "Cancelled: Incorrect input data provided",
    )
    assert RFC3339.match(cancelled["cancelled_at"])
    again = await rest.post(f"{path}/cancel", json={})
    assert again.status_code == 400
    assert error_of(again)["reason"] == "RUN_NOT_CANCELLABLE"

    retried = assert_plain_json(await rest.post(f"{path}/retry", json={}), 202)
    assert retried["status"] == "PENDING"
    again = await rest.post(f"{path}/retry", json={})
    assert again.status_code == 400
    assert error_of(again)["reason"] == "RUN_NOT_RETRYABLE"


async def test_wait_returns_the_run_when_it_ends_or_times_out(rest: httpx.AsyncClient) -> None:
    run = await start_run(rest)  # no worker runs here: it stays PENDING
    path = f"/api/v1/runs/{run['run_id']}"
    unfinished = assert_plain_json(await rest.get(f"{path}/wait?timeout=0.2s"), 200)
    assert (unfinished["run_id"], unfinished["status"]) == (run["run_id"], "PENDING")

    async def cancel_soon() -> None:
        await asyncio.sleep(0.3)
        await rest.post(f"{path}/cancel", json={"reason": "enough"})

    canceller = asyncio.create_task(cancel_soon())
    finished = assert_plain_json(await rest.get(f"{path}/wait?timeout=30s"), 200)
    await canceller
    assert (finished["status"], finished["error_message"]) == ("CANCELLED", "Cancelled: enough")

    too_long = await rest.get(f"{path}/wait?timeout=301s")
    assert too_long.status_code == 400
    assert list(error_of(too_long)["fields"]) == ["timeout"]


async def test_run_logs(rest: httpx.AsyncClient) -> None:
    run = await start_run(rest)
    await rest.post(f"/api/v1/runs/{run['run_id']}/cancel", json={"reason": "enough"})
    logs = assert_plain_json(await rest.get(f"/api/v1/runs/{run['run_id']}/logs"), 200)
    assert logs["run_id"] == run["run_id"]
    assert logs["logs"], logs
    line = logs["logs"][-1]
    assert {"sequence", "level", "message", "timestamp"} <= line.keys()
    assert "enough" in line["message"]
    tail = assert_plain_json(
        await rest.get(f"/api/v1/runs/{run['run_id']}/logs?after_sequence={line['sequence']}"),
        200,
    )
    assert tail["logs"] == []


async def test_unknown_run_is_404(rest: httpx.AsyncClient) -> None:
    path = f"/api/v1/runs/run-{uuid.uuid4()}"
    for response in (
        await rest.get(path),
        await rest.get(f"{path}/steps"),
        await rest.get(f"{path}/logs"),
        await rest.get(f"{path}/wait"),
        await rest.post(f"{path}/retry", json={}),
        await rest.post(f"{path}/cancel", json={}),
    ):
        assert response.status_code == 404, response.text
        assert error_of(response)["reason"] == "RUN_NOT_FOUND"


# --- what Envoy answers by itself ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/nothing", 404),
        ("GET", "/nothing", 404),
        ("DELETE", "/api/v1/runs", 404),
        ("GET", "/api/v1/agents?colour=blue", 400),
        ("GET", "/api/v1/runs?page=abc", 400),
    ],
)
async def test_unknown_paths_and_parameters_are_json_errors(
    rest: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await rest.request(method, path)
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == {400: 3, 404: 5}[status]
    assert error["message"]


async def test_malformed_json_is_a_400_json_error(rest: httpx.AsyncClient) -> None:
    response = await rest.post(
        "/api/v1/agents", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == 3


async def test_a_server_that_is_down_is_a_503_json_error() -> None:
    proxy = await start_envoy(unused_loopback_port())
    try:
        async with httpx.AsyncClient(base_url=proxy.url) as client:
            response = await client.get("/api/v1/agents")
    finally:
        await proxy.envoy.stop()
    assert response.status_code == 503
    assert error_of(response)["code"] == 14


# --- native gRPC on the same port ------------------------------------------------------


async def test_native_grpc_passes_through_the_same_listener(
    rest_url: str, rest: httpx.AsyncClient
) -> None:
    async with grpc.aio.insecure_channel(rest_url.removeprefix("http://")) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        agents: agents_pb2_grpc.AgentServiceAsyncStub = agents_pb2_grpc.AgentServiceStub(channel)
        call = agents.CreateAgent(agents_pb2.CreateAgentRequest(name="grpc", url="http://g:1"))
        # The Lua filter leaves gRPC alone: x-http-code stays metadata for gRPC clients.
        assert ("x-http-code", "201") in tuple(await call.initial_metadata() or ())
        created = await call
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await agents.CreateAgent(agents_pb2.CreateAgentRequest(name="grpc", url="http://g:1"))
        rich = failure(raised.value)
        assert (rich.code, rich.reason) == (grpc.StatusCode.ALREADY_EXISTS, "AGENT_NAME_TAKEN")
    # And the REST face sees the same data.
    fetched = assert_plain_json(await rest.get(f"/api/v1/agents/{created.id}"), 200)
    assert fetched["name"] == "grpc"


async def test_the_sdk_works_through_envoy(
    rest_url: str, rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    async with baton_sdk.connect(rest_url.removeprefix("http://")) as client:
        await client.agents.create(name="echo", url=echo_agent_url)
        with pytest.raises(AlreadyExistsError) as raised:
            await client.agents.create(name="echo", url=echo_agent_url)
        assert raised.value.reason == "AGENT_NAME_TAKEN"
        workflow = await linear_workflow(client, "echo", {"x": 1}, {"y": "${s1.output.x}"})
        # Waiting follows the run's event stream (WatchRun), through Envoy too.
        run = await client.runs.execute(workflow, input_data={}, wait=True, timeout=30)
        assert run.status is RunStatus.COMPLETED
        assert run.output["y"] == 1
