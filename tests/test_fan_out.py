"""Fan-out steps through Envoy, with real workers and real agents (the A2A echo agent, and
a plain-HTTP agent that counts its calls): one call per item, in order, at most
`max_parallel` at once, failures failing the step or collected, and a worker killed
mid-fan-out resumes without calling a finished item again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from baton_server.executor.worker import Worker
from tests.agents.http_agent import HttpAgent
from tests.rest_support import error_of
from tests.runs_support import worker_process
from tests.test_rest_api import assert_plain_json, create_agent


def fan_out_flow(**each: Any) -> dict[str, Any]:
    """split (echoes the documents) -> each (one call per document) -> report."""
    return {
        "name": "per-document",
        "start_step": "split",
        "steps": {
            "split": {
                "agent_name": "echo",
                "next_step": "each",
                "input_mapping": {"docs": "${workflow.input.docs}"},
            },
            "each": {
                "agent_name": "echo",
                "for_each": "${split.output.docs}",
                "input_mapping": {"doc": "${item}", "n": "${item_index}", "label": "#${item.id}"},
                "next_step": "report",
                **each,
            },
            "report": {"agent_name": "echo", "input_mapping": {"all": "${each.output}"}},
        },
    }


async def execute(rest: httpx.AsyncClient, workflow_id: str, docs: Any, **body: Any) -> Any:
    return await rest.post(
        f"/api/v1/workflows/{workflow_id}/execute", json={"input_data": {"docs": docs}, **body}
    )


async def finished(rest: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = assert_plain_json(
        await rest.get(f"/api/v1/runs/{run_id}/wait?timeout=60s"), 200
    )
    return run


class CountingAgent:
    """Answers each item after ``delay_s`` with ``{"n": index}``; fails the indices in
    ``failing``; counts calls per index and the most calls it had at once."""

    def __init__(self, delay_s: float = 0.0, failing: frozenset[int] = frozenset()) -> None:
        self.delay_s, self.failing = delay_s, failing
        self.calls: Counter[int] = Counter()
        self.peak = self._now = 0
        self._lock = threading.Lock()

    def __call__(self, payload: Any, _: dict[str, str]) -> tuple[int, Any]:
        index = payload["n"]
        with self._lock:
            self.calls[index] += 1
            self._now += 1
            self.peak = max(self.peak, self._now)
        time.sleep(self.delay_s)
        with self._lock:
            self._now -= 1
        if index in self.failing:
            return 422, {"error": f"cannot read document {index}"}
        return 200, {"n": index}

    @contextmanager
    def serving(self) -> Iterator[str]:
        with HttpAgent(self) as agent:
            yield agent.url


async def counting_workflow(
    rest: httpx.AsyncClient, url: str, **each: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    await create_agent(rest, "counter", url=url, protocol="http", max_retries=0)
    body = fan_out_flow(**each)
    body["steps"]["each"].update(agent_name="counter", input_mapping={"n": "${item_index}"})
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    return workflow, [{"id": i} for i in range(30)]


async def test_a_for_each_over_20_items_gives_20_outputs_in_order(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    workflow = assert_plain_json(
        await rest.post("/api/v1/workflows", json=fan_out_flow(max_parallel=4)), 201
    )
    each = workflow["workflow_data"]["steps"]["each"]
    assert (each["for_each"], each["max_parallel"]) == ("${split.output.docs}", 4)
    docs = [{"id": i, "text": f"document {i}"} for i in range(20)]
    run = assert_plain_json(await execute(rest, workflow["id"], docs, wait_timeout="60s"), 200)
    assert run["status"] == "COMPLETED", run

    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run['run_id']}/steps"), 200)
    parent = next(s for s in steps if s["step_id"] == "each")
    assert (parent["status"], parent["input_data"]) == ("COMPLETED", {"item_count": 20})
    outputs = parent["output_data"]
    assert [o["n"] for o in outputs] == list(range(20))
    assert [o["doc"] for o in outputs] == docs
    assert outputs[7]["label"] == "#7"  # interpolated from the item
    items = [s for s in steps if s.get("parent_step_id") == "each"]
    assert sorted(s["item_index"] for s in items) == list(range(20))
    assert all(s["step_id"] == f"each[{s['item_index']}]" for s in items)
    assert {(s["status"], s["attempt"]) for s in items} == {("COMPLETED", 1)}
    assert all(s.get("item_index") is None for s in steps if s["step_id"] in ("split", "each"))
    # The next step reads the list; the run's output is the last step's.
    assert [o["n"] for o in run["output"]["all"]] == list(range(20))
    assert run["progress"] == 100

    one = assert_plain_json(await rest.get(f"/api/v1/runs/{run['run_id']}/steps/each%5B3%5D"), 200)
    assert (one["input_data"]["doc"], one["output_data"]["n"]) == (docs[3], 3)
    logs = assert_plain_json(await rest.get(f"/api/v1/runs/{run['run_id']}/logs"), 200)["logs"]
    item_lines = Counter(line["step_id"] for line in logs if line["step_id"].startswith("each["))
    assert set(item_lines) == {f"each[{i}]" for i in range(20)}
    assert all(count >= 2 for count in item_lines.values())  # started, completed


async def test_max_parallel_bounds_the_calls_and_collect_keeps_going_past_failures(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    agent = CountingAgent(delay_s=0.05, failing=frozenset({4, 11}))
    with agent.serving() as url:
        workflow, docs = await counting_workflow(
            rest, url, max_parallel=3, on_item_failure="collect"
        )
        run = assert_plain_json(await execute(rest, workflow["id"], docs, wait_timeout="60s"), 200)
    assert run["status"] == "COMPLETED", run
    assert agent.peak == 3
    assert agent.calls == Counter(range(30))  # every item once
    outputs = run["output"]["all"]
    assert len(outputs) == 30
    assert outputs[4] == {"error": outputs[4]["error"]}
    assert "cannot read document 4" in outputs[4]["error"]
    assert [o["n"] for i, o in enumerate(outputs) if i not in (4, 11)] == [
        i for i in range(30) if i not in (4, 11)
    ]
    steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run['run_id']}/steps"), 200)
    failed = {s["step_id"] for s in steps if s["status"] == "FAILED"}
    assert failed == {"each[4]", "each[11]"}


async def test_a_failed_item_fails_the_step_and_a_retry_calls_only_what_did_not_complete(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    agent = CountingAgent(failing=frozenset({5}))
    with agent.serving() as url:
        workflow, docs = await counting_workflow(rest, url, max_parallel=1)
        run = assert_plain_json(await execute(rest, workflow["id"], docs, wait_timeout="60s"), 200)
        assert run["status"] == "FAILED"
        assert run["error_message"].startswith("Step 'each' failed: item 5: ")
        assert agent.calls == Counter(range(6))  # one at a time: nothing after item 5
        steps = {
            s["step_id"]: s
            for s in assert_plain_json(await rest.get(f"/api/v1/runs/{run['run_id']}/steps"), 200)
        }
        assert steps["each"]["status"] == "FAILED"
        assert steps["each[5]"]["status"] == "FAILED"
        assert steps["each[6]"]["status"] == "PENDING"

        agent.failing = frozenset()
        assert_plain_json(await rest.post(f"/api/v1/runs/{run['run_id']}/retry", json={}), 202)
        done = await finished(rest, run["run_id"])
    assert done["status"] == "COMPLETED", done
    assert [o["n"] for o in done["output"]["all"]] == list(range(30))
    assert agent.calls == Counter(range(30)) + Counter([5])  # only item 5 again


async def test_an_empty_list_completes_the_step_and_a_non_list_fails_it(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=fan_out_flow()), 201)
    empty = assert_plain_json(await execute(rest, workflow["id"], [], wait_timeout="30s"), 200)
    assert (empty["status"], empty["output"]["all"]) == ("COMPLETED", [])

    wrong = assert_plain_json(
        await execute(rest, workflow["id"], {"a": 1}, wait_timeout="30s"), 200
    )
    assert wrong["status"] == "FAILED"
    assert wrong["error_message"] == (
        "Step 'each' failed: for_each ${split.output.docs} is dict, not a list"
    )
    too_many = assert_plain_json(
        await execute(rest, workflow["id"], list(range(10_001)), wait_timeout="30s"), 200
    )
    assert too_many["status"] == "FAILED"
    assert "has 10001 items, more than 10000" in too_many["error_message"]


async def test_invalid_fan_outs_are_refused_naming_the_field(rest: httpx.AsyncClient) -> None:
    await create_agent(rest, "echo")
    flow = fan_out_flow()
    cases: list[tuple[dict[str, Any], str | None, str]] = [
        (
            {"each": {"for_each": "split.output.docs"}},
            "WORKFLOW_INVALID_REFERENCE",
            "each.for_each",
        ),
        ({"each": {"for_each": "${item}"}}, "WORKFLOW_INVALID_REFERENCE", "each.for_each"),
        ({"each": {"for_each": "${report.output.x}"}}, "WORKFLOW_REFERENCE_ORDER", "each.for_each"),
        (
            {"report": {"input_mapping": {"x": "${item.id}"}}},
            "WORKFLOW_INVALID_REFERENCE",
            "report.input_mapping.x",
        ),
        (
            {"each": {"input_mapping": {"x": "${item_index.n}"}}},
            "WORKFLOW_INVALID_REFERENCE",
            "each.input_mapping.x",
        ),
        ({"report": {"max_parallel": 3}}, "WORKFLOW_INVALID_STEP", "report.max_parallel"),
        (
            {"report": {"on_item_failure": "collect"}},
            "WORKFLOW_INVALID_STEP",
            "report.on_item_failure",
        ),
        ({"each": {"max_parallel": 0}}, None, "each.max_parallel"),
    ]
    for overrides, reason, field in cases:
        body = {**flow, "steps": {**flow["steps"]}}
        for step_id, changes in overrides.items():
            body["steps"][step_id] = {**body["steps"][step_id], **changes}
        response = await rest.post("/api/v1/workflows", json=body)
        assert response.status_code == 400, (overrides, response.text)
        error = error_of(response)
        if reason is not None:
            assert error["reason"] == reason, error
        assert list(error["fields"]) == [f"steps.{field}"], error
    listed = assert_plain_json(await rest.get("/api/v1/workflows"), 200)
    assert listed["total"] == 0  # nothing was created


async def test_a_paused_fan_out_finishes_the_items_in_flight_and_starts_no_other(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    agent = CountingAgent(delay_s=0.3)
    with agent.serving() as url:
        workflow, docs = await counting_workflow(rest, url, max_parallel=2)
        run_id = assert_plain_json(await execute(rest, workflow["id"], docs[:6]), 202)["run_id"]
        for _ in range(500):
            if sum(agent.calls.values()) >= 3:
                break
            await asyncio.sleep(0.02)
        assert_plain_json(await rest.post(f"/api/v1/runs/{run_id}/pause", json={}), 200)
        for _ in range(200):  # the items in flight finish, and the run is given back
            steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
            if not any(s["status"] == "RUNNING" and s["parent_step_id"] for s in steps):
                break
            await asyncio.sleep(0.05)
        called = sum(agent.calls.values())
        assert called in (3, 4)
        await asyncio.sleep(0.8)
        assert sum(agent.calls.values()) == called  # nothing started while paused
        run = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}"), 200)
        assert run["status"] == "PAUSED"
        assert_plain_json(await rest.post(f"/api/v1/runs/{run_id}/resume", json={}), 200)
        done = await finished(rest, run_id)
    assert done["status"] == "COMPLETED", done
    assert agent.calls == Counter(range(6))


async def test_a_worker_killed_mid_fan_out_resumes_without_calling_finished_items_again(
    rest: httpx.AsyncClient,
    database_url: str,
    redis_url: str,
    echo_agent_url: str,
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    await create_agent(rest, "echo", url=echo_agent_url)
    agent = CountingAgent(delay_s=0.2)
    with agent.serving() as url:
        workflow, docs = await counting_workflow(rest, url, max_parallel=4)
        first = worker_process(database_url, redis_url)
        worker_processes.append(first)
        run_id = assert_plain_json(await execute(rest, workflow["id"], docs), 202)["run_id"]
        for _ in range(600):
            steps = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
            if sum(s["status"] == "COMPLETED" and bool(s["parent_step_id"]) for s in steps) >= 8:
                break
            await asyncio.sleep(0.05)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        in_flight = {
            s["item_index"]
            for s in assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}/steps"), 200)
            if s["status"] == "RUNNING" and s["parent_step_id"]
        }
        assert 1 <= len(in_flight) <= 4

        worker_processes.append(worker_process(database_url, redis_url))
        done = await finished(rest, run_id)
    assert done["status"] == "COMPLETED", done
    assert [o["n"] for o in done["output"]["all"]] == list(range(30))
    twice = {index for index, count in agent.calls.items() if count > 1}
    assert twice <= in_flight  # only items in flight at the kill were called again
    assert set(agent.calls) == set(range(30))
    assert max(agent.calls.values()) <= 2
