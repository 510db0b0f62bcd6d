"""Runs end to end: a real worker drives real A2A (and plain HTTP) agents."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.v1 import agents_pb2, runs_pb2, runs_pb2_grpc, workflows_pb2
from tests.agents.http_agent import HttpAgent
from tests.agents.process import AgentProcess, unused_loopback_port
from tests.rpc_errors import failure
from tests.runs_support import (
    as_json,
    chain,
    create_workflow,
    execute,
    log_lines,
    register_agent,
    steps_of,
    wait_for,
    wait_for_step,
)

Run = runs_pb2.Run
Step = runs_pb2.RunStep
FAST_RETRY = {"max_retries": 0}


@pytest.fixture(scope="module")
def failing_agent_url() -> Iterator[str]:
    """An A2A agent whose tasks always fail."""
    with AgentProcess() as agent:
        yield agent.start(mode="fail")


async def test_seed_etl_example_runs_with_mapping_and_interpolation(
    stubs: Any, echo_agent_url: str, engine: AsyncEngine
) -> None:
    agents, workflows, runs = stubs
    for name in ("DataExtractorAgent", "DataTransformerAgent", "DataLoaderAgent"):
        await register_agent(agents, name, echo_agent_url)
    workflow = await create_workflow(
        workflows,
        {
            "name": "data-processing-pipeline",
            "start_step": "extract",
            "steps": {
                "extract": {
                    "id": "extract",
                    "agent_name": "DataExtractorAgent",
                    "next_step": "transform",
                    "input_mapping": {
                        "source_url": "${workflow.input.data_source}",
                        "format": "${workflow.input.format}",
                        "limit": "${workflow.input.options.limit}",
                    },
                },
                "transform": {
                    "id": "transform",
                    "agent_name": "DataTransformerAgent",
                    "next_step": "load",
                    "input_mapping": {
                        "raw_data": "${extract.output.data}",
                        "schema": "${workflow.input.schema}",
                        "note": "Hello, ${workflow.input.user.name}! limit=${extract.output.limit}",
                    },
                },
                "load": {
                    "id": "load",
                    "agent_name": "DataLoaderAgent",
                    "next_step": None,
                    "input_mapping": {
                        "transformed_data": "${transform.output.data}",
                        "destination": "${workflow.input.destination}",
                        "first_tag": "${workflow.input.tags[0]}",
                        "static": {"retries": 2},
                    },
                },
            },
        },
    )
    input_data = {
        "data_source": "https://api.example.com/data",
        "format": "json",
        "schema": "v2",
        "destination": "s3://bucket/output/",
        "user": {"name": "Ada"},
        "options": {"limit": 100},
        "tags": ["a", "b"],
    }
    started = await execute(runs, workflow.id, input_data)
    assert started.status == Run.PENDING
    assert started.id.startswith("run-")
    assert started.run_id == started.id
    assert (started.workflow_id, started.workflow_version) == (workflow.id, 1)
    assert started.workflow_definition_id == workflow.definition_id
    assert started.triggered_by == "system"

    run = await wait_for(runs, started.id)
    assert run.status == Run.COMPLETED, run.error_message
    assert run.progress == 100
    assert run.HasField("completed_at")
    assert not run.HasField("error_message")
    assert as_json(run.input_data) == as_json(started.input_data)

    steps = await steps_of(runs, run.id)
    assert [
        s.step_id
        for s in (await runs.ListRunSteps(runs_pb2.ListRunStepsRequest(run_id=run.id))).steps
    ] == ["extract", "transform", "load"]
    assert {(s.status, s.attempt) for s in steps.values()} == {(Step.COMPLETED, 1)}
    assert as_json(steps["extract"].input_data) == {
        "source_url": "https://api.example.com/data",
        "format": "json",
        "limit": 100,
    }
    transform_input = as_json(steps["transform"].input_data)
    assert transform_input["raw_data"] == as_json(steps["extract"].output_data)["data"]
    # Interpolated integers read as integers, not "100.0".
    assert transform_input["note"] == "Hello, Ada! limit=100"
    load_input = as_json(steps["load"].input_data)
    assert load_input["first_tag"] == "a"
    assert load_input["static"] == {"retries": 2}
    assert as_json(run.output) == as_json(steps["load"].output_data)
    assert as_json(run.output)["destination"] == "s3://bucket/output/"

    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                sa.text(
                    "SELECT input_data FROM run_steps WHERE run_id = :r AND step_id = 'extract'"
                ),
                {"r": run.id},
            )
        ).scalar_one()
    assert stored["limit"] == 100
    assert isinstance(stored["limit"], int)

    lines = await log_lines(runs, run.id)
    assert lines[0].startswith("Run created for workflow 'data-processing-pipeline'")
    for step_id in ("extract", "transform", "load"):
        assert f"Step '{step_id}' attempt 1 started (agent " in "\n".join(lines)
        assert f"Step '{step_id}' completed" in lines
    assert lines[-1].startswith("Run completed in")


async def test_parallel_branches_run_concurrently(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    slow = {"_mode": "sleep", "_sleep_ms": 800}
    workflow = await create_workflow(
        workflows,
        {
            "name": "fan-out-fan-in",
            "start_step": "start",
            "steps": {
                "start": {"agent_name": "echo", "next_step": "left", "input_mapping": {"x": 1}},
                "left": {"agent_name": "echo", "input_mapping": {**slow, "side": "left"}},
                "right": {
                    "agent_name": "echo",
                    "depends_on": ["start"],
                    "input_mapping": {**slow, "side": "right"},
                },
                "join": {
                    "agent_name": "echo",
                    "depends_on": ["left", "right"],
                    "input_mapping": {"l": "${left.output.side}", "r": "${right.output.side}"},
                },
            },
        },
    )
    run = await wait_for(runs, (await execute(runs, workflow.id, {})).id)
    assert run.status == Run.COMPLETED, run.error_message
    steps = await steps_of(runs, run.id)
    assert as_json(steps["join"].input_data) == {"l": "left", "r": "right"}
    left, right = steps["left"], steps["right"]
    assert left.started_at.ToDatetime() < right.completed_at.ToDatetime()
    assert right.started_at.ToDatetime() < left.completed_at.ToDatetime()
    assert steps["join"].started_at.ToDatetime() >= max(
        left.completed_at.ToDatetime(), right.completed_at.ToDatetime()
    )


async def test_failed_task_fails_the_run_with_the_step_error(
    stubs: Any, echo_agent_url: str
) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url, retry_config=FAST_RETRY)
    workflow = await create_workflow(
        workflows,
        chain(("ok", "echo", {}), ("boom", "echo", {"_mode": "fail"}), ("never", "echo", {})),
    )
    run = await wait_for(runs, (await execute(runs, workflow.id, {})).id)
    assert run.status == Run.FAILED
    assert run.error_message.startswith("Step 'boom' failed:")
    assert "intentional failure" in run.error_message
    assert run.HasField("completed_at")
    assert run.progress == 33
    steps = await steps_of(runs, run.id)
    assert steps["ok"].status == Step.COMPLETED
    assert steps["boom"].status == Step.FAILED
    assert "intentional failure" in steps["boom"].error_message
    assert steps["never"].status == Step.PENDING
    assert not steps["never"].HasField("started_at")
    assert any("Step 'boom' failed" in line for line in await log_lines(runs, run.id))


def retry_delay(lines: list[str], marker: str) -> int:
    """The delay of the retry logged on the line that contains ``marker``."""
    (line,) = (line for line in lines if marker in line)
    found = re.search(r"retrying in (\d+) ms", line)
    assert found, line
    return int(found[1])


async def test_retries_back_off_exponentially_then_succeed(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(
        agents,
        "flaky",
        echo_agent_url,
        retry_config={
            "max_retries": 3,
            "initial_delay_ms": 200,
            "backoff_multiplier": 2.0,
            "max_delay_ms": 1000,
        },
    )
    key = uuid.uuid4().hex
    workflow = await create_workflow(
        workflows, chain(("step", "flaky", {"_mode": "flaky", "_fail_times": 2, "_key": key}))
    )
    begun = time.monotonic()
    run = await wait_for(runs, (await execute(runs, workflow.id, {})).id)
    elapsed = time.monotonic() - begun
    assert run.status == Run.COMPLETED, run.error_message
    assert (await steps_of(runs, run.id))["step"].attempt == 3
    assert elapsed >= 0.3, "at least half of 200 ms + 400 ms of backoff expected"
    lines = await log_lines(runs, run.id)
    # With jitter: between half the backoff and all of it.
    assert 100 <= retry_delay(lines, "attempt 1 failed") <= 200
    assert 200 <= retry_delay(lines, "attempt 2 failed") <= 400
    assert "Step 'step' attempt 3 started (agent 'flaky')" in lines


async def test_retries_are_capped_by_max_delay_and_max_retries(
    stubs: Any, echo_agent_url: str
) -> None:
    agents, workflows, runs = stubs
    await register_agent(
        agents,
        "flaky",
        echo_agent_url,
        retry_config={
            "max_retries": 2,
            "initial_delay_ms": 100,
            "backoff_multiplier": 10.0,
            "max_delay_ms": 1000,
        },
    )
    workflow = await create_workflow(
        workflows,
        chain(("step", "flaky", {"_mode": "flaky", "_fail_times": 5, "_key": uuid.uuid4().hex})),
    )
    run = await wait_for(runs, (await execute(runs, workflow.id, {})).id)
    assert run.status == Run.FAILED
    assert (await steps_of(runs, run.id))["step"].attempt == 3
    lines = await log_lines(runs, run.id)
    assert 50 <= retry_delay(lines, "attempt 1 failed") <= 100
    assert 500 <= retry_delay(lines, "attempt 2 failed") <= 1000  # 100 * 10, capped at 1000


async def test_agent_timeout_fails_the_step(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "slow", echo_agent_url, timeout_ms=1000, retry_config=FAST_RETRY)
    workflow = await create_workflow(
        workflows, chain(("wait", "slow", {"_mode": "sleep", "_sleep_ms": 5000}))
    )
    begun = time.monotonic()
    run = await wait_for(runs, (await execute(runs, workflow.id, {})).id)
    assert run.status == Run.FAILED
    assert "Timed out after 1000ms" in run.error_message
    assert time.monotonic() - begun >= 1.0


async def test_unreachable_agent_is_retried_then_fails(stubs: Any) -> None:
    agents, workflows, runs = stubs
    await register_agent(
        agents,
        "dead",
        f"http://127.0.0.1:{unused_loopback_port()}",
        retry_config={"max_retries": 1, "initial_delay_ms": 100},
    )
    workflow = await create_workflow(workflows, chain(("call", "dead", {})))
    run = await wait_for(runs, (await execute(runs, workflow.id, {})).id)
    assert run.status == Run.FAILED
    assert (await steps_of(runs, run.id))["call"].attempt == 2
    assert 50 <= retry_delay(await log_lines(runs, run.id), "attempt 1 failed") <= 100


async def test_plain_http_agent_with_auth_and_idempotency_key(stubs: Any) -> None:
    agents, workflows, runs = stubs
    with HttpAgent(lambda payload, _: (200, {"sum": payload["a"] + payload["b"]})) as agent:
        await register_agent(
            agents,
            "adder",
            agent.url,
            protocol="http",
            auth_type="bearer",
            auth_config={"token": "t0ken"},
        )
        workflow = await create_workflow(
            workflows,
            chain(
                ("add", "adder", {"a": "${workflow.input.a}", "b": 2}),
                ("again", "adder", {"a": "${add.output.sum}", "b": 10}),
            ),
        )
        run = await wait_for(runs, (await execute(runs, workflow.id, {"a": 1})).id)
        assert run.status == Run.COMPLETED, run.error_message
        assert as_json(run.output) == {"sum": 13}
        first, second = agent.received
        assert first.payload == {"a": 1, "b": 2}
        assert first.headers["authorization"] == "Bearer t0ken"
        assert first.headers["idempotency-key"] == f"{run.id}/add"
        assert second.headers["idempotency-key"] == f"{run.id}/again"
        assert first.headers["baton-attempt"] == second.headers["baton-attempt"] == "1"


async def test_client_errors_are_not_retried(stubs: Any) -> None:
    agents, workflows, runs = stubs
    with HttpAgent(lambda payload, _: (400, {"error": "bad input"})) as agent:
        await register_agent(
            agents,
            "picky",
            agent.url,
            protocol="http",
            retry_config={"max_retries": 5, "initial_delay_ms": 1000},
        )
        workflow = await create_workflow(workflows, chain(("call", "picky", {})))
        run = await wait_for(runs, (await execute(runs, workflow.id, {})).id)
        assert run.status == Run.FAILED
        assert len(agent.received) == 1, "a 4xx must not be retried"
        assert "400" in run.error_message


async def test_missing_reference_fails_the_step_naming_it(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(
        workflows, chain(("first", "echo", {"x": "${workflow.input.customer.id}"}))
    )
    run = await wait_for(runs, (await execute(runs, workflow.id, {"customer": {}})).id)
    assert run.status == Run.FAILED
    assert "${workflow.input.customer.id}" in run.error_message
    step = (await steps_of(runs, run.id))["first"]
    assert step.status == Step.FAILED
    assert step.attempt == 0, "the agent was never called"


async def test_cancel_mid_step_stops_the_run_promptly(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(
        workflows,
        chain(("slow", "echo", {"_mode": "sleep", "_sleep_ms": 20000}), ("after", "echo", {})),
    )
    run = await execute(runs, workflow.id, {})
    await wait_for_step(runs, run.id, "slow", Step.RUNNING)
    begun = time.monotonic()
    cancelled = await runs.CancelRun(
        runs_pb2.CancelRunRequest(run_id=run.id, reason="Dataset too large, need to optimize first")
    )
    assert time.monotonic() - begun < 1.0
    assert cancelled.status == Run.CANCELLED
    assert cancelled.error_message == "Cancelled: Dataset too large, need to optimize first"
    assert cancelled.cancelled_by == "system"
    assert cancelled.HasField("cancelled_at")
    assert not cancelled.HasField("completed_at")
    await asyncio.sleep(0.5)  # the worker must not overwrite the cancellation
    final = await runs.GetRun(runs_pb2.GetRunRequest(run_id=run.id))
    assert final.status == Run.CANCELLED
    steps = await steps_of(runs, run.id)
    assert steps["slow"].status == Step.FAILED
    assert steps["slow"].error_message.startswith("Cancelled:")
    assert steps["after"].status == Step.PENDING
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.id))
    found = failure(caught.value)
    assert (found.code, found.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "RUN_NOT_CANCELLABLE",
    )


async def test_retry_after_fixing_the_agent_skips_completed_steps(
    stubs: Any, echo_agent_url: str, failing_agent_url: str
) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    broken = await register_agent(agents, "broken", failing_agent_url, retry_config=FAST_RETRY)
    workflow = await create_workflow(
        workflows,
        chain(
            ("first", "echo", {"n": 1}),
            ("second", "broken", {"x": "${first.output.n}"}),
            ("third", "echo", {"y": "${second.output.x}"}),
        ),
    )
    run = await wait_for(runs, (await execute(runs, workflow.id, {})).id)
    assert run.status == Run.FAILED
    first_before = (await steps_of(runs, run.id))["first"]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runs.CancelRun(runs_pb2.CancelRunRequest(run_id=run.id))
    assert failure(caught.value).reason == "RUN_NOT_CANCELLABLE"

    await agents.UpdateAgent(agents_pb2.UpdateAgentRequest(agent_id=broken.id, url=echo_agent_url))
    retried = await runs.RetryRun(runs_pb2.RetryRunRequest(run_id=run.id))
    assert retried.status == Run.PENDING
    assert not retried.HasField("error_message")
    run = await wait_for(runs, run.id)
    assert run.status == Run.COMPLETED, run.error_message
    steps = await steps_of(runs, run.id)
    assert steps["first"].attempt == 1
    assert steps["first"].started_at == first_before.started_at, "completed step re-ran"
    assert steps["second"].attempt == 2
    assert as_json(run.output)["y"] == 1

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runs.RetryRun(runs_pb2.RetryRunRequest(run_id=run.id))
    found = failure(caught.value)
    assert (found.code, found.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RUN_NOT_RETRYABLE")


async def test_execute_is_idempotent_with_a_request_id(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(workflows, chain(("only", "echo", {})))
    other = await create_workflow(workflows, chain(("only", "echo", {}), name="other"))
    first, second = await asyncio.gather(
        execute(runs, workflow.id, {"a": 1}, request_id="key-1"),
        execute(runs, workflow.id, {"a": 1}, request_id="key-1"),
    )
    assert first.id == second.id
    assert first.request_id == "key-1"
    third = await execute(runs, other.id, {}, request_id="key-1")
    assert third.id != first.id
    listed = await runs.ListRuns(runs_pb2.ListRunsRequest(workflow_id=workflow.id))
    assert listed.total == 1


async def test_runs_pin_the_version_they_started_with(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(
        workflows,
        chain(
            ("v1_first", "echo", {"_mode": "sleep", "_sleep_ms": 600}), ("v1_second", "echo", {})
        ),
    )
    old = await execute(runs, workflow.id, {})
    await wait_for_step(runs, old.id, "v1_first", Step.RUNNING)
    updated = await workflows.UpdateWorkflow(
        workflows_pb2.UpdateWorkflowRequest(
            workflow_id=workflow.id,
            start_step="v2_only",
            steps={"v2_only": workflows_pb2.Step(agent_name="echo")},
        )
    )
    assert updated.version == 2
    old = await wait_for(runs, old.id)
    assert old.status == Run.COMPLETED
    assert old.workflow_version == 1
    assert old.workflow_definition_id == workflow.definition_id
    assert set(await steps_of(runs, old.id)) == {"v1_first", "v1_second"}
    new = await wait_for(runs, (await execute(runs, workflow.id, {})).id)
    assert (new.workflow_version, set(await steps_of(runs, new.id))) == (2, {"v2_only"})


async def test_only_active_workflows_run(stubs: Any, echo_agent_url: str) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(workflows, chain(("only", "echo", {})))
    await workflows.DeactivateWorkflow(
        workflows_pb2.DeactivateWorkflowRequest(workflow_id=workflow.id)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await execute(runs, workflow.id, {})
    found = failure(caught.value)
    assert (found.code, found.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "WORKFLOW_NOT_ACTIVE",
    )
    await workflows.DeleteWorkflow(workflows_pb2.DeleteWorkflowRequest(workflow_id=workflow.id))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await execute(runs, workflow.id, {})
    assert failure(caught.value).reason == "WORKFLOW_NOT_ACTIVE"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await execute(runs, str(uuid.uuid4()), {})
    assert failure(caught.value).reason == "WORKFLOW_NOT_FOUND"
    assert (await runs.ListRuns(runs_pb2.ListRunsRequest())).total == 0


async def test_unknown_runs(runs: runs_pb2_grpc.RunServiceAsyncStub) -> None:
    calls: list[Any] = [
        runs.GetRun(runs_pb2.GetRunRequest(run_id="run-nope")),
        runs.ListRunSteps(runs_pb2.ListRunStepsRequest(run_id="run-nope")),
        runs.GetRunLogs(runs_pb2.GetRunLogsRequest(run_id="run-nope")),
        runs.RetryRun(runs_pb2.RetryRunRequest(run_id="run-nope")),
        runs.CancelRun(runs_pb2.CancelRunRequest(run_id="run-nope")),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        found = failure(caught.value)
        assert (found.code, found.reason) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")


async def test_list_runs_filters_sorting_and_pagination(
    stubs: Any, echo_agent_url: str, failing_agent_url: str
) -> None:
    agents, workflows, runs = stubs
    await register_agent(agents, "echo", echo_agent_url)
    await register_agent(agents, "broken", failing_agent_url, retry_config=FAST_RETRY)
    good = await create_workflow(workflows, chain(("a", "echo", {}), name="good"))
    bad = await create_workflow(workflows, chain(("a", "broken", {}), name="bad"))
    ids = [(await execute(runs, good.id, {"i": i})).id for i in range(3)]
    ids.append((await execute(runs, bad.id, {})).id)
    for run_id in ids:
        await wait_for(runs, run_id)

    failed = await runs.ListRuns(runs_pb2.ListRunsRequest(status=Run.FAILED))
    assert [r.id for r in failed.items] == [ids[3]]
    assert failed.items[0].error_message.startswith("Step 'a' failed")
    by_workflow = await runs.ListRuns(
        runs_pb2.ListRunsRequest(workflow_id=good.id, sort_by="created_at", sort_order="asc")
    )
    assert [r.id for r in by_workflow.items] == ids[:3]
    assert (
        await runs.ListRuns(runs_pb2.ListRunsRequest(workflow_definition_id=bad.definition_id))
    ).total == 1
    assert (await runs.ListRuns(runs_pb2.ListRunsRequest(workflow_id="wf-unknown"))).total == 0
    page = await runs.ListRuns(runs_pb2.ListRunsRequest(page=2, page_size=3))
    assert (page.total, page.total_pages, len(page.items)) == (4, 2, 1)
    assert page.items[0].id == ids[0]  # newest first by default

    created = (await runs.GetRun(runs_pb2.GetRunRequest(run_id=ids[2]))).created_at
    after = await runs.ListRuns(runs_pb2.ListRunsRequest(created_after=created))
    assert {r.id for r in after.items} == {ids[2], ids[3]}
    before = await runs.ListRuns(runs_pb2.ListRunsRequest(created_before=created))
    assert {r.id for r in before.items} == set(ids[:2])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await runs.ListRuns(runs_pb2.ListRunsRequest(sort_by="name"))
    assert "sort_by" in failure(caught.value).fields
