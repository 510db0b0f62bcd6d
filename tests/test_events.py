"""Live run events over gRPC: snapshot, order, gap-free resume, slow subscribers, feeds."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.v1 import runs_pb2, runs_pb2_grpc
from baton.v1 import workflows_pb2_grpc as wf_grpc
from baton_server.app import start_grpc
from baton_server.db.tables import DEFAULT_PROJECT_ID
from baton_server.events.hub import EventHub, Subscription
from baton_server.executor.worker import Worker
from baton_server.runs.model import RunEvent
from baton_server.runs.watch import Snapshot, WatchService
from tests.access_support import TEST_SECRETS
from tests.conftest import FAST_WORKER
from tests.rpc_errors import failure
from tests.runs_support import chain, create_workflow, execute, register_agent, wait_for
from tests.test_executor_crash import RedisProcess

Event = runs_pb2.RunEvent
Run = runs_pb2.Run
SLOW = {"_mode": "sleep", "_sleep_ms": 300}


async def three_step_workflow(
    agents: Any, workflows: wf_grpc.WorkflowServiceAsyncStub, url: str, *, name: str = "watched"
) -> str:
    await register_agent(agents, f"echo-{name}", url)
    workflow = await create_workflow(
        workflows,
        chain(
            ("a", f"echo-{name}", SLOW),
            ("b", f"echo-{name}", SLOW),
            ("c", f"echo-{name}", {"x": "${b.output.echo}"}),
            name=name,
        ),
    )
    return workflow.id


def assert_gap_free(events: list[Event], *, start: int) -> None:
    sequences = [e.sequence for e in events]
    assert sequences == list(range(start, start + len(sequences))), sequences


async def test_watch_starts_with_a_snapshot_then_streams_live_until_terminal(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    worker: Worker,
    echo_agent_url: str,
) -> None:
    workflow_id = await three_step_workflow(agents, workflows, echo_agent_url)
    run = await execute(runs, workflow_id, {})
    received: list[tuple[float, Event]] = []
    async for event in runs.WatchRun(runs_pb2.WatchRunRequest(run_id=run.id)):
        received.append((time.monotonic(), event))
    events = [e for _, e in received]
    snapshot = events[0]
    assert snapshot.type == Event.state_sync
    assert snapshot.run.id == run.id
    assert {s.step_id for s in snapshot.steps} == {"a", "b", "c"}
    assert_gap_free(events[1:], start=snapshot.sequence + 1)
    last = events[-1]
    assert (last.type, last.status, last.terminal) == (Event.run_status, Run.COMPLETED, True)
    assert last.progress == 100
    assert last.output.struct_value.fields["x"].bool_value is True
    assert not any(e.terminal for e in events[:-1])
    kinds = [(e.type, e.step_id) for e in events]
    for step in ("a", "b", "c"):
        started = kinds.index((Event.step_started, step))
        assert kinds.index((Event.step_completed, step)) > started
    # Live: the first step's events arrived long before the run ended.
    first_completion = next(t for t, e in received if e.type == Event.step_completed)
    assert received[-1][0] - first_completion > 0.25
    # The stream matches the stored log exactly.
    again = [
        e async for e in runs.WatchRun(runs_pb2.WatchRunRequest(run_id=run.id, after_sequence=1))
    ]
    assert [e.sequence for e in again] == list(range(2, last.sequence + 1))


async def test_resume_by_sequence_has_no_gaps_and_no_duplicates(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    worker: Worker,
    echo_agent_url: str,
) -> None:
    workflow_id = await three_step_workflow(agents, workflows, echo_agent_url)
    run = await execute(runs, workflow_id, {})
    seen: list[Event] = []
    after = 0
    # Disconnect after every second event and resume from the last sequence seen.
    while not (seen and seen[-1].terminal):
        call = runs.WatchRun(runs_pb2.WatchRunRequest(run_id=run.id, after_sequence=after))
        count = 0
        async for event in call:
            if event.type != Event.state_sync:
                seen.append(event)
            after = event.sequence
            count += 1
            if count == 2:
                call.cancel()
                break
    assert_gap_free(seen, start=seen[0].sequence)
    assert seen[0].sequence <= 3
    assert seen[-1].status == Run.COMPLETED


async def test_watch_of_an_unknown_run_fails_with_not_found(
    runs: runs_pb2_grpc.RunServiceAsyncStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in runs.WatchRun(runs_pb2.WatchRunRequest(run_id="run-unknown")):
            pass
    assert failure(caught.value).reason == "RUN_NOT_FOUND"


async def test_watch_of_a_finished_run_is_a_terminal_snapshot(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    worker: Worker,
    echo_agent_url: str,
) -> None:
    await register_agent(agents, "echo", echo_agent_url)
    workflow = await create_workflow(workflows, chain(("only", "echo", {})))
    run = await wait_for(runs, (await execute(runs, workflow.id, {})).id)
    events = [e async for e in runs.WatchRun(runs_pb2.WatchRunRequest(run_id=run.id))]
    assert len(events) == 1
    assert (events[0].type, events[0].terminal, events[0].run.status) == (
        Event.state_sync,
        True,
        Run.COMPLETED,
    )


async def test_a_stalled_subscriber_catches_up_without_gaps(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    worker: Worker,
    echo_agent_url: str,
    pool: asyncpg.Pool,
    redis_client: redis.Redis,
) -> None:
    workflow_id = await three_step_workflow(agents, workflows, echo_agent_url)
    hub = EventHub(redis_client, queue_capacity=2)  # overflows after two events
    hub.start()
    try:
        run = await execute(runs, workflow_id, {})
        stream = WatchService(pool, hub).watch_run(DEFAULT_PROJECT_ID, run.id, after_sequence=0)
        snapshot = await anext(stream)
        assert isinstance(snapshot, Snapshot)
        # Not reading while the run produces its events: the executor is not held up.
        started = time.monotonic()
        finished = await wait_for(runs, run.id)
        assert finished.status == Run.COMPLETED
        assert time.monotonic() - started < 5
        rest: list[RunEvent] = [e async for e in stream if isinstance(e, RunEvent)]
        sequences = [e.sequence for e in rest]
        assert sequences == list(range(snapshot.sequence + 1, snapshot.sequence + 1 + len(rest)))
        assert rest[-1].data is not None
        assert rest[-1].data["status"] == "COMPLETED"
    finally:
        await hub.stop()


async def test_events_survive_a_redis_outage(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    echo_agent_url: str,
    engine: AsyncEngine,
    database_url: str,
) -> None:
    workflow_id = await three_step_workflow(agents, workflows, echo_agent_url)
    own_redis = RedisProcess()
    await own_redis.start()
    client = redis.Redis.from_url(own_redis.url)
    app = await start_grpc(engine, client, "127.0.0.1:0", secrets=TEST_SECRETS)
    worker = Worker(database_url, own_redis.url, FAST_WORKER, secrets=TEST_SECRETS)
    await worker.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            runs = runs_pb2_grpc.RunServiceStub(channel)
            run = await execute(runs, workflow_id, {})
            events: list[Event] = []
            async for event in runs.WatchRun(runs_pb2.WatchRunRequest(run_id=run.id)):
                events.append(event)
                if event.type == Event.step_started and event.step_id == "a":
                    await own_redis.kill()
                    await asyncio.sleep(0.2)
                    await own_redis.start()
            assert_gap_free(events[1:], start=events[0].sequence + 1)
            assert events[-1].status == Run.COMPLETED
    finally:
        await worker.stop()
        await app.stop(grace=1)
        await client.aclose()
        await own_redis.kill()


async def test_watch_runs_feed_filters_by_workflow_and_status(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    worker: Worker,
    echo_agent_url: str,
) -> None:
    watched = await three_step_workflow(agents, workflows, echo_agent_url, name="watched")
    other = await three_step_workflow(agents, workflows, echo_agent_url, name="other")
    feed = runs.WatchRuns(
        runs_pb2.WatchRunsRequest(workflow_id=watched, statuses=[Run.RUNNING, Run.COMPLETED])
    )
    received: list[Event] = []

    async def collect() -> None:
        async for event in feed:
            received.append(event)
            if event.status == Run.COMPLETED:
                return

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0.3)  # subscribed
    await execute(runs, other, {})
    run = await execute(runs, watched, {})
    await asyncio.wait_for(collector, 30)
    assert {e.run_id for e in received} == {run.id}
    assert [e.status for e in received] == [Run.RUNNING, Run.COMPLETED]
    assert all(e.type == Event.run_status for e in received)
    assert received[-1].run.workflow_id == watched


async def test_a_quiet_subscription_is_woken_by_the_hub_idle_clock() -> None:
    """No message for a while (one may have been lost): the watcher wakes up empty-handed
    and reads PostgreSQL; a message that arrives in time is delivered as usual."""
    subscription = Subscription("baton:run-events:run-x", capacity=10)
    waiting = asyncio.ensure_future(subscription.next())
    await asyncio.sleep(0)
    subscription.tick()  # the clock's first tick may come right after the wait began
    await asyncio.sleep(0)
    assert not waiting.done()
    subscription.tick()
    assert await waiting is None
    waiting = asyncio.ensure_future(subscription.next())
    await asyncio.sleep(0)
    subscription.tick()
    event = RunEvent("run-x", 1, "run_status", None, None, None, {}, datetime.now(UTC))
    subscription.offer((event, "wf"))
    assert await waiting == (event, "wf")
