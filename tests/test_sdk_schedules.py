"""``client.schedules`` (async and blocking) against the real server and a worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import baton_sdk
from baton_sdk import BatonClient, InvalidArgumentError, RunStatus, Step
from baton_sdk.schedules import (
    FireOutcome,
    IntervalUnit,
    OverlapPolicy,
    ScheduleState,
    ScheduleType,
)
from baton_server.app import GrpcApp
from baton_server.executor.worker import Worker


@pytest.fixture
async def client(grpc_app: GrpcApp, engine: AsyncEngine) -> AsyncIterator[BatonClient]:
    async with baton_sdk.connect(f"127.0.0.1:{grpc_app.port}") as client:
        yield client


async def _workflow(client: BatonClient, agent_url: str) -> baton_sdk.Workflow:
    await client.agents.create(name="echo", url=agent_url)
    return await client.workflows.create(
        name="report", start_step="a", steps={"a": Step(agent_name="echo", input_mapping={})}
    )


async def test_schedules_of_every_type_typed(
    client: BatonClient, worker: Worker, echo_agent_url: str
) -> None:
    workflow = await _workflow(client, echo_agent_url)
    cron = await client.schedules.create(
        workflow,
        name="weekday mornings",
        cron_expression="0 9 * * 1-5",
        timezone="America/New_York",
        parameters={"source": "sdk"},
        overlap_policy=OverlapPolicy.CANCEL_PREVIOUS,
    )
    assert cron.schedule_type is ScheduleType.CRON
    assert cron.state is ScheduleState.SCHEDULED
    assert cron.next_execution is not None
    assert cron.upcoming_executions[0] == cron.next_execution
    new_york = [t.astimezone(ZoneInfo("America/New_York")) for t in cron.upcoming_executions]
    assert {(t.hour, t.minute) for t in new_york} == {(9, 0)}
    assert all(t.weekday() < 5 for t in new_york)
    assert cron.overlap_policy is OverlapPolicy.CANCEL_PREVIOUS
    assert cron.parameters == {"source": "sdk"}

    every = await client.schedules.create(workflow, name="often", every=(2, "seconds"))
    assert (every.interval_value, every.interval_unit) == (2, IntervalUnit.SECONDS)
    moment = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    once = await client.schedules.create(workflow, name="once", at=moment, enabled=False)
    assert (once.execution_time, once.state) == (moment, ScheduleState.DISABLED)

    listed = await client.schedules.list(workflow=workflow).to_list()
    assert {s.id for s in listed} == {cron.id, every.id, once.id}
    assert [s.id for s in await client.schedules.list(enabled=False).to_list()] == [once.id]

    fired = None
    for _ in range(100):
        fired = (await client.schedules.get(every)).last_execution
        if fired is not None:
            break
        await asyncio.sleep(0.1)
    assert fired is not None, "the interval schedule did not fire"
    assert fired.scheduled_for is not None

    run = await client.schedules.trigger(cron, request_id="manual-1")
    assert run.triggered_by == f"schedule:{cron.id}"
    finished = await run.wait(timeout=30)
    assert finished.status is RunStatus.COMPLETED
    assert finished.input_data == {"source": "sdk"}
    fires = await client.schedules.fires(cron, outcome=FireOutcome.TRIGGERED).to_list()
    assert [f.run_id for f in fires] == [run.id]

    updated = await client.schedules.update(every, enabled=False, every=(3, IntervalUnit.HOURS))
    assert (updated.state, updated.interval_value) == (ScheduleState.DISABLED, 3)

    with pytest.raises(InvalidArgumentError) as raised:
        await client.schedules.create(workflow, name="bad", cron_expression="0 9 * *")
    assert raised.value.reason == "INVALID_SCHEDULE"
    assert [v.field for v in raised.value.field_violations] == ["cron_expression"]

    await client.schedules.delete(once)
    with pytest.raises(baton_sdk.NotFoundError):
        await client.schedules.get(once)


async def test_the_blocking_client_schedules_too(
    grpc_app: GrpcApp, client: BatonClient, worker: Worker, echo_agent_url: str
) -> None:
    workflow = await _workflow(client, echo_agent_url)

    def script() -> None:
        with baton_sdk.connect_sync(f"127.0.0.1:{grpc_app.port}") as sync:
            schedule = sync.schedules.create(
                workflow.id, name="nightly", cron_expression="0 0 * * *"
            )
            assert sync.schedules.get(schedule.id).name == "nightly"
            assert [s.id for s in sync.schedules.list()] == [schedule.id]
            run = sync.schedules.trigger(schedule)
            assert run.wait(timeout=30).status is RunStatus.COMPLETED
            assert [f.outcome for f in sync.schedules.fires(schedule)] == [FireOutcome.TRIGGERED]
            assert sync.schedules.update(schedule, enabled=False).enabled is False
            sync.schedules.delete(schedule)
            assert sync.schedules.list().to_list() == []

    await asyncio.to_thread(script)
