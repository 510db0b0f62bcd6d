"""The async SDK's runs: execute, wait, watch, logs, retry, cancel - real worker and agents."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import baton_sdk
from baton.v1 import runs_pb2
from baton_sdk import (
    BatonClient,
    LogLevel,
    Route,
    RunEvent,
    RunEventType,
    RunStatus,
    Step,
    StepStatus,
    Wait,
    WaitTimeoutError,
)
from baton_server.app import GrpcApp
from baton_server.executor.worker import Worker
from tests.agents.process import AgentProcess
from tests.sdk_support import linear_workflow, sleeping

ETL_INPUT = {
    "data_source": "https://api.example.com/data",
    "format": "json",
    "options": {"limit": 100},
}


@pytest.fixture
async def client(
    grpc_app: GrpcApp, engine: AsyncEngine, worker: Worker
) -> AsyncIterator[BatonClient]:
    async with baton_sdk.connect(f"127.0.0.1:{grpc_app.port}") as client:
        yield client


@pytest.fixture(scope="module")
def failing_agent_url() -> Iterator[str]:
    with AgentProcess() as agent:
        yield agent.start(mode="fail")


async def test_execute_with_wait_returns_the_finished_run(
    client: BatonClient, echo_agent_url: str
) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await linear_workflow(
        client, "echo", {"source": "${workflow.input.data_source}"}, {"data": "${s1.output.data}"}
    )
    run = await client.runs.execute(workflow, input_data=ETL_INPUT, wait=True, timeout=30)
    assert run.status is RunStatus.COMPLETED
    assert run.status.is_terminal
    assert (run.progress, run.error_message) == (100, None)
    assert run.output["data"] == {"source": "https://api.example.com/data"}
    assert run.input_data == ETL_INPUT  # whole numbers come back as int
    assert run.completed_at is not None
    assert run.completed_at >= run.created_at
    assert run.duration is not None
    assert (run.cancelled_at, run.cancelled_by, run.request_id) == (None, None, None)
    assert (run.workflow_id, run.workflow_version) == (workflow.id, 1)
    assert run.workflow_definition_id == workflow.definition_id
    assert run.workflow_name == "linear"
    assert isinstance(run.proto, runs_pb2.Run)

    steps = await client.runs.steps(run)
    assert [(s.step_id, s.status, s.attempt) for s in steps] == [
        ("s1", StepStatus.COMPLETED, 1),
        ("s2", StepStatus.COMPLETED, 1),
    ]
    assert steps[0].input_data == {"source": "https://api.example.com/data"}
    assert steps[1].output_data == run.output
    assert all(s.duration is not None and s.error_message is None for s in steps)


async def test_wait_on_an_existing_run_and_through_the_run_object(
    client: BatonClient, echo_agent_url: str
) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await linear_workflow(client, "echo", sleeping(200))
    started = await client.runs.execute(workflow.id, input_data={"n": 1})
    assert started.status is RunStatus.PENDING
    finished = await started.wait(timeout=30)
    assert finished.status is RunStatus.COMPLETED
    assert (await client.runs.wait(started.id)).status is RunStatus.COMPLETED
    assert (await started.refresh()) == finished
    # Waiting on a run that already finished answers at once.
    assert (await client.runs.wait(finished, timeout=5)) == finished


async def test_wait_timeout_raises_and_the_run_goes_on(
    client: BatonClient, echo_agent_url: str
) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await linear_workflow(client, "echo", sleeping(1500))
    with pytest.raises(WaitTimeoutError) as caught:
        await client.runs.execute(workflow, wait=True, timeout=0.5)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert error.last_status in (RunStatus.PENDING, RunStatus.RUNNING)
    assert error.run_id.startswith("run-")
    assert error.code.name == "DEADLINE_EXCEEDED"
    finished = await client.runs.wait(error.run_id, timeout=30)
    assert finished.status is RunStatus.COMPLETED


async def test_failed_run_is_returned_with_its_error(
    client: BatonClient, failing_agent_url: str
) -> None:
    await client.agents.create(
        name="broken", url=failing_agent_url, retry_config={"max_retries": 0}
    )
    workflow = await linear_workflow(client, "broken", {})
    run = await client.runs.execute(workflow, wait=True, timeout=30)
    assert run.status is RunStatus.FAILED
    assert run.error_message is not None
    assert "intentional failure" in run.error_message
    assert run.output is None
    [step] = await client.runs.steps(run)
    assert step.status is StepStatus.FAILED
    assert step.error_message is not None


async def test_watch_streams_typed_events_until_terminal(
    client: BatonClient, echo_agent_url: str
) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await linear_workflow(client, "echo", sleeping(100), {"x": "${s1.output.echo}"})
    run = await client.runs.execute(workflow)
    events = [event async for event in client.runs.watch(run)]

    snapshot = events[0]
    assert snapshot.type is RunEventType.STATE_SYNC
    assert snapshot.run is not None
    assert snapshot.run.id == run.id
    assert {s.step_id for s in snapshot.steps} == {"s1", "s2"}
    sequences = [e.sequence for e in events[1:]]
    assert sequences == list(range(snapshot.sequence + 1, snapshot.sequence + 1 + len(sequences)))
    last = events[-1]
    assert (last.type, last.status, last.terminal) == (
        RunEventType.RUN_STATUS,
        RunStatus.COMPLETED,
        True,
    )
    assert last.output == {"x": True, "echo": True, "data": {"x": True}}
    assert not any(e.terminal for e in events[:-1])
    completed = [e for e in events if e.type is RunEventType.STEP_COMPLETED]
    assert [(e.step_id, e.attempt) for e in completed] == [("s1", 1), ("s2", 1)]
    # Each state change carries its log line.
    assert [e.message for e in completed] == ["Step 's1' completed", "Step 's2' completed"]
    assert all(e.level is LogLevel.INFO for e in events[1:])
    assert last.message is not None
    assert last.message.startswith("Run completed in")
    assert all(e.timestamp is not None for e in events)

    # Resuming after any event gives exactly the events that followed it.
    middle = events[len(events) // 2]
    resumed = [e async for e in run.watch(after_sequence=middle.sequence)]
    assert [e.sequence for e in resumed] == [
        e.sequence for e in events if e.sequence > middle.sequence and e is not snapshot
    ]
    # A finished run's stream is a single terminal snapshot.
    [final] = [e async for e in client.runs.watch(run)]
    assert (final.type, final.terminal, final.status) == (
        RunEventType.STATE_SYNC,
        True,
        RunStatus.COMPLETED,
    )


async def test_logs_page_through_and_follow_live(client: BatonClient, echo_agent_url: str) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await linear_workflow(client, "echo", sleeping(300), {}, {})
    run = await client.runs.execute(workflow)
    followed = [line async for line in client.runs.follow_logs(run)]
    assert followed[0].message.startswith("Run created for workflow 'linear'")
    assert followed[-1].message.startswith("Run completed in")

    stored = await client.runs.logs(run).to_list()
    assert stored == followed
    assert [line.sequence for line in stored] == sorted({line.sequence for line in stored})
    paged = await client.runs.logs(run, page_size=2).to_list()
    assert paged == stored
    assert await client.runs.logs(run, limit=3).to_list() == stored[:3]
    later = await client.runs.logs(run, after_sequence=stored[2].sequence).to_list()
    assert later == stored[3:]
    s2 = await client.runs.logs(run, step_id="s2").to_list()
    assert s2
    assert {line.step_id for line in s2} == {"s2"}
    assert [line async for line in client.runs.follow_logs(run, step_id="s2")] == s2
    assert all(line.timestamp.tzinfo is not None for line in stored)


async def test_cancel_a_running_run(client: BatonClient, echo_agent_url: str) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await linear_workflow(client, "echo", sleeping(10_000), {})
    run = await client.runs.execute(workflow)
    async for event in client.runs.watch(run):
        if event.type is RunEventType.STEP_STARTED:
            break
    cancelled = await client.runs.cancel(run, reason="changed my mind", cancelled_by="tester")
    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.error_message == "Cancelled: changed my mind"
    assert cancelled.cancelled_by == "tester"
    assert cancelled.cancelled_at is not None
    assert cancelled.finished_at == cancelled.cancelled_at
    assert (await client.runs.wait(run, timeout=30)).status is RunStatus.CANCELLED


async def test_pause_resume_one_step_and_delete(client: BatonClient, echo_agent_url: str) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await linear_workflow(client, "echo", sleeping(400, n=1), {"n": "${s1.output.n}"})
    run = await client.runs.execute(workflow)
    async for event in client.runs.watch(run):
        if event.type is RunEventType.STEP_STARTED:
            break
    paused = await client.runs.pause(run, reason="check s1")
    assert paused.status is RunStatus.PAUSED
    assert not paused.status.is_terminal
    with pytest.raises(baton_sdk.FailedPreconditionError) as refused:
        await client.runs.pause(run)
    assert refused.value.reason == "RUN_NOT_PAUSABLE"
    async for event in client.runs.watch(run):
        if event.type is RunEventType.STEP_COMPLETED:
            break  # s1, in flight when paused, finished
    assert (await client.runs.step(run, "s2")).status is StepStatus.PENDING
    resumed = await client.runs.resume(run)
    assert resumed.status in (RunStatus.PENDING, RunStatus.RUNNING)
    finished = await client.runs.wait(run, timeout=30)
    assert finished.status is RunStatus.COMPLETED
    second = await client.runs.step(run, "s2")
    assert (second.input_data, second.output_data["n"]) == ({"n": 1}, 1)
    await client.runs.delete(run)
    with pytest.raises(baton_sdk.NotFoundError):
        await client.runs.get(run.id)


async def test_retry_resumes_a_failed_run(client: BatonClient, echo_agent_url: str) -> None:
    await client.agents.create(name="echo", url=echo_agent_url, retry_config={"max_retries": 0})
    flaky = {"_mode": "flaky", "_key": f"retry-{uuid.uuid4()}", "_fail_times": 1}
    workflow = await linear_workflow(client, "echo", {}, flaky)
    failed = await client.runs.execute(workflow, wait=True, timeout=30)
    assert failed.status is RunStatus.FAILED
    retried = await client.runs.retry(failed)
    assert (retried.id, retried.status) == (failed.id, RunStatus.PENDING)
    finished = await retried.wait(timeout=30)
    assert finished.status is RunStatus.COMPLETED
    steps = {s.step_id: s for s in await client.runs.steps(finished)}
    assert (steps["s1"].attempt, steps["s2"].attempt) == (1, 2), "s1 did not run again"


async def test_retry_with_wait(client: BatonClient, echo_agent_url: str) -> None:
    await client.agents.create(name="echo", url=echo_agent_url, retry_config={"max_retries": 0})
    flaky = {"_mode": "flaky", "_key": f"retry-{uuid.uuid4()}", "_fail_times": 1}
    workflow = await linear_workflow(client, "echo", flaky)
    failed = await client.runs.execute(workflow, wait=True, timeout=30)
    finished = await client.runs.retry(failed, wait=True, timeout=30)
    assert (failed.status, finished.status) == (RunStatus.FAILED, RunStatus.COMPLETED)


async def test_execute_is_idempotent_with_a_request_id(
    client: BatonClient, echo_agent_url: str
) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await linear_workflow(client, "echo", {})
    first = await client.runs.execute(workflow, request_id="order-42", triggered_by="shop")
    second = await client.runs.execute(workflow, request_id="order-42", triggered_by="shop")
    assert first.id == second.id
    assert (first.request_id, first.triggered_by) == ("order-42", "shop")
    await first.wait(timeout=30)


async def test_list_runs_filters_and_pages(
    client: BatonClient, echo_agent_url: str, failing_agent_url: str
) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    await client.agents.create(
        name="broken", url=failing_agent_url, retry_config={"max_retries": 0}
    )
    good = await linear_workflow(client, "echo", {}, name="good")
    bad = await linear_workflow(client, "broken", {}, name="bad")
    ids = [(await client.runs.execute(good, input_data={"i": i})).id for i in range(5)]
    failed = await client.runs.execute(bad, wait=True, timeout=30)
    for run_id in ids:
        await client.runs.wait(run_id, timeout=30)

    assert [r.id async for r in client.runs.list(status=RunStatus.FAILED)] == [failed.id]
    oldest_first = client.runs.list(workflow=good, sort_by="created_at", sort_order="asc")
    assert [r.id async for r in oldest_first] == ids
    assert [r.id async for r in client.runs.list(page_size=2)] == [failed.id, *reversed(ids)]
    assert len(await client.runs.list(limit=4, page_size=3).to_list()) == 4
    by_version = client.runs.list(workflow_definition_id=bad.definition_id)
    assert [r.id async for r in by_version] == [failed.id]
    third = await client.runs.get(ids[2])
    after = {r.id async for r in client.runs.list(created_after=third.created_at)}
    assert after == {*ids[2:], failed.id}
    before = {r.id async for r in client.runs.list(created_before=third.created_at)}
    assert before == set(ids[:2])
    listed = await client.runs.list(limit=1).to_list()
    assert (await listed[0].refresh()).id == failed.id


async def test_watch_all_reports_status_changes_of_every_run(
    client: BatonClient, echo_agent_url: str
) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await linear_workflow(client, "echo", {})
    seen: list[RunEvent] = []
    subscribed = asyncio.Event()

    async def collect() -> None:
        async with contextlib.aclosing(
            client.runs.watch_all(workflow=workflow, statuses=[RunStatus.COMPLETED])
        ) as events:
            subscribed.set()
            async for event in events:
                seen.append(event)
                if len(seen) == 2:
                    return

    collector = asyncio.create_task(collect())
    await subscribed.wait()
    # The subscription is live once the server has it; give the call a moment.
    await asyncio.sleep(0.3)
    runs = [await client.runs.execute(workflow, input_data={"i": i}) for i in range(2)]
    await asyncio.wait_for(collector, 30)
    assert {e.run_id for e in seen} == {r.id for r in runs}
    assert all(e.type is RunEventType.RUN_STATUS for e in seen)
    assert all(e.status is RunStatus.COMPLETED for e in seen)
    assert all(e.run is not None and e.run.status is RunStatus.COMPLETED for e in seen)


async def test_routes_and_limits_in_the_typed_sdk(client: BatonClient, echo_agent_url: str) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    classify = Step(
        agent_name="echo",
        input_mapping={"kind": "${workflow.input.kind}"},
        routes=(Route(when='output.kind == "x"', next_step="x"),),
        next_step="y",
        timeout_ms=5000,
    )
    workflow = await client.workflows.create(
        name="typed",
        start_step="a",
        steps={"a": classify, "x": Step(agent_name="echo"), "y": Step(agent_name="echo")},
        max_concurrent_runs=1,
    )
    assert workflow.max_concurrent_runs == 1
    assert workflow.workflow_data.steps["a"].routes == classify.routes
    assert workflow.workflow_data.steps["a"].timeout_ms == 5000

    run = await client.runs.execute(
        workflow, input_data={"kind": "x"}, run_timeout_s=60, wait=True, timeout=30
    )
    assert run.status is RunStatus.COMPLETED
    assert run.timeout_seconds == 60
    assert run.deadline is not None
    assert run.deadline > run.created_at
    steps = {s.step_id: s.status for s in await client.runs.steps(run)}
    assert steps == {"a": StepStatus.COMPLETED, "x": StepStatus.COMPLETED, "y": StepStatus.SKIPPED}
    lifted = await client.workflows.update(workflow, max_concurrent_runs=0)
    assert lifted.max_concurrent_runs is None


async def test_testing_one_step_makes_no_run(client: BatonClient, echo_agent_url: str) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    workflow = await linear_workflow(
        client, "echo", {"a": "${workflow.input.a}"}, {"b": "${s1.output.a}"}
    )
    tested = await client.workflows.test_step(workflow, "s2", step_outputs={"s1": {"a": 5}})
    assert tested.completed
    assert tested.input == {"b": 5}
    assert tested.output["b"] == 5
    assert [t.id async for t in client.workflows.step_tests(workflow, "s2")] == [tested.id]
    assert [r async for r in client.runs.list()] == []


async def test_wait_steps_and_signals(client: BatonClient, echo_agent_url: str) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    gate = Step(wait=Wait(signal="go", timeout_seconds=60), next_step="after")
    workflow = await client.workflows.create(
        name="gate",
        start_step="gate",
        steps={
            "gate": gate,
            "after": Step(agent_name="echo", input_mapping={"got": "${gate.output.n}"}),
        },
    )
    assert workflow.workflow_data.steps["gate"].wait == Wait(signal="go", timeout_seconds=60)
    run = await client.runs.execute(workflow)
    async for event in client.runs.watch(run):
        if event.type is RunEventType.STEP_WAITING:
            break
    assert (await client.runs.step(run, "gate")).status is StepStatus.WAITING
    assert await client.runs.signal(run, "go", {"n": 3}) is False
    assert await client.runs.signal(run, "go", {"n": 4}) is True  # a repeat
    done = await client.runs.wait(run, timeout=30)
    assert done.status is RunStatus.COMPLETED
    assert done.output["got"] == 3


async def test_fan_out_steps_in_the_typed_sdk(client: BatonClient, echo_agent_url: str) -> None:
    await client.agents.create(name="echo", url=echo_agent_url)
    each = Step(
        agent_name="echo",
        for_each="${workflow.input.docs}",
        max_parallel=2,
        on_item_failure="collect",
        input_mapping={"doc": "${item}", "n": "${item_index}"},
    )
    workflow = await client.workflows.create(name="fan", start_step="each", steps={"each": each})
    assert workflow.workflow_data.steps["each"] == Step(**{**each.__dict__, "id": "each"})
    done = await client.runs.execute(workflow, input_data={"docs": ["a", "b", "c"]}, wait=True)
    assert done.status is RunStatus.COMPLETED
    assert [o["doc"] for o in done.output] == ["a", "b", "c"]
    items = [s for s in await client.runs.steps(done) if s.parent_step_id == "each"]
    assert sorted((s.item_index, s.step_id) for s in items) == [
        (0, "each[0]"),
        (1, "each[1]"),
        (2, "each[2]"),
    ]
    assert (await client.runs.step(done, "each[1]")).output_data["doc"] == "b"
