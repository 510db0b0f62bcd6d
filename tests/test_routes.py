"""Conditional routes through Envoy, with a real worker and a real A2A agent: a
classifier's output picks one branch, the others are SKIPPED, the join runs once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from typing import Any

import httpx
import pytest

from baton_server.executor.worker import Worker
from tests.rest_support import error_of
from tests.runs_support import worker_process
from tests.test_rest_api import assert_plain_json, create_agent


def support_desk(**overrides: Any) -> dict[str, Any]:
    """classify -> billing | tech | general (default) -> answer (the join)."""
    steps: dict[str, Any] = {
        "classify": {
            "agent_name": "echo",
            "input_mapping": {"category": "${workflow.input.category}"},
            "routes": [
                {"when": 'output.category == "billing"', "next_step": "billing"},
                {"when": 'output.category == "tech"', "next_step": "tech"},
            ],
            "next_step": "general",
        },
        "billing": {"agent_name": "echo", "next_step": "answer", "input_mapping": {"q": "b"}},
        "tech": {"agent_name": "echo", "next_step": "answer", "input_mapping": {"q": "t"}},
        "general": {"agent_name": "echo", "next_step": "answer", "input_mapping": {"q": "g"}},
        "answer": {
            "agent_name": "echo",
            "input_mapping": {
                "billing": "${billing.output.q}",
                "tech": "${tech.output.q}",
                "general": "${general.output.q}",
            },
        },
    }
    for key, value in overrides.items():
        steps[key] = {**steps[key], **value}
    return {"name": "desk", "start_step": "classify", "steps": steps}


async def run_to_end(rest: httpx.AsyncClient, workflow_id: str, category: str) -> str:
    run = assert_plain_json(
        await rest.post(
            f"/api/v1/workflows/{workflow_id}/execute",
            json={"input_data": {"category": category}, "wait_timeout": "30s"},
        ),
        200,
    )
    assert run["status"] == "COMPLETED", run
    return str(run["run_id"])


@pytest.mark.parametrize(
    ("category", "taken"), [("billing", "billing"), ("tech", "tech"), ("other", "general")]
)
async def test_the_classifier_output_picks_one_branch_and_the_join_runs_once(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str, category: str, taken: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=support_desk()), 201)
    assert workflow["workflow_data"]["steps"]["classify"]["routes"][0] == {
        "when": 'output.category == "billing"',
        "next_step": "billing",
    }
    run_id = await run_to_end(rest, workflow["id"], category)

    steps = {
        s["step_id"]: s
        for s in assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
    }
    branches = {"billing", "tech", "general"}
    assert steps[taken]["status"] == "COMPLETED"
    assert {steps[b]["status"] for b in branches - {taken}} == {"SKIPPED"}
    assert {steps[b]["attempt"] for b in branches - {taken}} == {0}
    # The join ran once, reading null for the branches not taken.
    answer = steps["answer"]
    assert (answer["status"], answer["attempt"]) == ("COMPLETED", 1)
    expected = {b: None for b in branches} | {taken: taken[0]}
    assert answer["input_data"] == expected
    run = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}"), 200)
    assert run["progress"] == 100
    assert run["output"]["billing"] == expected["billing"]

    logs = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/logs"), 200)["logs"]
    skipped = sorted(line["step_id"] for line in logs if "skipped" in line["message"])
    assert skipped == sorted(branches - {taken})


async def test_no_route_and_no_default_ends_the_run_after_the_routed_step(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    body = support_desk(classify={"next_step": None})
    del body["steps"]["general"]
    del body["steps"]["answer"]["input_mapping"]["general"]
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    run_id = await run_to_end(rest, workflow["id"], "neither")
    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
    assert {s["step_id"]: s["status"] for s in steps} == {
        "classify": "COMPLETED",
        "billing": "SKIPPED",
        "tech": "SKIPPED",
        "answer": "SKIPPED",
    }
    run = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}"), 200)
    assert run["output"]["category"] == "neither"  # the routed step's output


async def test_a_route_that_fails_at_run_time_fails_the_step_naming_it(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    routes = [
        {"when": "output.score > 0.5", "next_step": "billing"},
        {"when": "true", "next_step": "tech"},
    ]
    body = support_desk(classify={"routes": routes})
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    run = assert_plain_json(
        await rest.post(
            f"/api/v1/workflows/{workflow['id']}/execute",
            json={"input_data": {"category": "x"}, "wait_timeout": "30s"},
        ),
        200,
    )
    assert run["status"] == "FAILED"
    assert run["error_message"].startswith(
        "Step 'classify' failed: routes[0].when `output.score > 0.5` failed: "
    )
    assert "score" in run["error_message"]


async def test_invalid_routes_are_refused_naming_the_field(rest: httpx.AsyncClient) -> None:
    await create_agent(rest, "echo")
    cases: list[tuple[dict[str, Any], str | None, str]] = [
        (
            {
                "classify": {
                    "routes": [
                        {"when": "true", "next_step": "nowhere"},
                        {"when": "true", "next_step": "billing"},
                        {"when": "true", "next_step": "tech"},
                    ]
                }
            },
            "WORKFLOW_UNKNOWN_STEP",
            "steps.classify.routes[0].next_step",
        ),
        (
            {
                "classify": {
                    "routes": [
                        {"when": 'output.category == "billing"', "next_step": "billing"},
                        {"when": "output.category ==", "next_step": "tech"},
                    ]
                }
            },
            "WORKFLOW_INVALID_ROUTE",
            "steps.classify.routes[1].when",
        ),
        (
            # tech cannot have run before billing: they are exclusive branches.
            {"billing": {"input_mapping": {"x": "${tech.output.q}"}}},
            "WORKFLOW_REFERENCE_ORDER",
            "steps.billing.input_mapping.x",
        ),
        (
            {"classify": {"routes": [{"when": "", "next_step": "tech"}]}},
            None,
            "steps.classify.routes[0].when",
        ),
    ]
    for overrides, reason, field in cases:
        response = await rest.post("/api/v1/workflows", json=support_desk(**overrides))
        assert response.status_code == 400, response.text
        error = error_of(response)
        if reason is not None:
            assert error["reason"] == reason
        assert list(error["fields"]) == [field], error
    listed = assert_plain_json(await rest.get("/api/v1/workflows"), 200)
    assert listed["total"] == 0  # nothing was created


async def test_a_worker_killed_on_a_branch_resumes_on_the_same_branch(
    rest: httpx.AsyncClient,
    database_url: str,
    redis_url: str,
    echo_agent_url: str,
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    slow = {"q": "t", "_mode": "sleep", "_sleep_ms": 1500}
    body = support_desk(tech={"input_mapping": slow})
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    first = worker_process(database_url, redis_url)
    worker_processes.append(first)
    run = assert_plain_json(
        await rest.post(
            f"/api/v1/workflows/{workflow['id']}/execute",
            json={"input_data": {"category": "tech"}},
        ),
        202,
    )
    run_id = run["run_id"]
    for _ in range(400):
        step = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps/tech"), 200)
        if step["status"] == "RUNNING":
            break
        await asyncio.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)

    worker_processes.append(worker_process(database_url, redis_url))
    done = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/wait?timeout=60s"), 200)
    assert done["status"] == "COMPLETED"
    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
    assert {s["step_id"]: (s["status"], s["attempt"]) for s in steps} == {
        "classify": ("COMPLETED", 1),
        "tech": ("COMPLETED", 2),  # in flight at the kill
        "billing": ("SKIPPED", 0),
        "general": ("SKIPPED", 0),
        "answer": ("COMPLETED", 1),
    }
