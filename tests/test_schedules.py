"""Schedules through the real Envoy, PostgreSQL, Redis and an A2A agent; the scheduler's
clock is the published seam, so catch-up, overlap and daylight-saving changes are walked
through without waiting."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from baton_server.db.tables import DEFAULT_PROJECT_ID
from baton_server.events.publisher import EventPublisher
from baton_server.executor.worker import Worker
from baton_server.paging import PageRequest
from baton_server.runs.dispatch import Dispatcher
from baton_server.runs.service import RunService
from baton_server.schedules.model import Schedule, TimingSpec
from baton_server.schedules.service import ScheduleService
from tests.rest_support import echo_workflow, error_of
from tests.runs_support import worker_process

PROJECT = DEFAULT_PROJECT_ID


# -- the REST contract (seed 003) -------------------------------------------------------

SEED_BODY = {
    "name": "Daily Feedback Analysis",
    "description": "Runs feedback analysis every night at midnight",
    "schedule_type": "cron",
    "cron_expression": "0 0 * * *",
    "parameters": {"source": "daily_report", "include_recommendations": True},
    "enabled": True,
    "timezone": "UTC",
}


async def test_seed_003_schedule_bodies_create_update_list_and_delete(
    rest: httpx.AsyncClient, echo_agent_url: str
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url, "nightly")
    created = await rest.post(f"/api/v1/workflows/{workflow_id}/schedules", json=SEED_BODY)
    assert created.status_code == 201, created.text
    schedule = created.json()
    midnight = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    assert schedule["next_execution"] == midnight.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert len(schedule["upcoming_executions"]) == 5
    assert schedule["upcoming_executions"][1] == (midnight + timedelta(days=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    for name in ("name", "description", "schedule_type", "cron_expression", "parameters"):
        assert schedule[name] == SEED_BODY[name], name
    assert schedule["workflow_id"] == workflow_id
    assert schedule["workflow_name"] == "nightly"
    assert (schedule["state"], schedule["overlap_policy"]) == ("scheduled", "skip")
    assert schedule["catchup_window_seconds"] == 60
    assert schedule["created_by"] == "system"
    assert "last_execution" not in schedule
    assert "interval_value" not in schedule  # fields of other types are absent
    assert "interval_unit" not in schedule

    fetched = await rest.get(f"/api/v1/workflow_schedules/{schedule['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["next_execution"] == schedule["next_execution"]

    # Seed 003's update body: every night at 2 AM.
    updated = await rest.put(
        f"/api/v1/workflow_schedules/{schedule['id']}",
        json={
            "name": "Daily Feedback Analysis",
            "description": "Runs feedback analysis every night at 2 AM",
            "cron_expression": "0 2 * * *",
            "parameters": {"source": "daily_report", "generate_report": True},
            "enabled": True,
        },
    )
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["cron_expression"] == "0 2 * * *"
    assert body["next_execution"].endswith("T02:00:00Z")
    assert body["parameters"] == {"source": "daily_report", "generate_report": True}

    interval = await rest.post(
        f"/api/v1/workflows/{workflow_id}/schedules",
        json={
            "name": "every half hour",
            "schedule_type": "interval",
            "interval_value": 30,
            "interval_unit": "minutes",
            "enabled": False,
        },
    )
    assert interval.status_code == 201, interval.text
    assert interval.json()["state"] == "disabled"
    assert "next_execution" not in interval.json()

    listed = (await rest.get("/api/v1/workflow_schedules?page=1&page_size=10")).json()
    assert (listed["total"], listed["page"], listed["total_pages"]) == (2, 1, 1)
    enabled = (await rest.get("/api/v1/workflow_schedules?enabled=true")).json()
    assert [s["id"] for s in enabled["items"]] == [schedule["id"]]
    disabled = (await rest.get("/api/v1/workflow_schedules?enabled=false")).json()
    assert [s["id"] for s in disabled["items"]] == [interval.json()["id"]]
    other = (await rest.get(f"/api/v1/workflow_schedules?workflow_id={uuid.uuid4()}")).json()
    assert other["total"] == 0

    deleted = await rest.delete(f"/api/v1/workflow_schedules/{schedule['id']}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": schedule["id"], "deleted": True}
    gone = await rest.get(f"/api/v1/workflow_schedules/{schedule['id']}")
    assert gone.status_code == 404
    assert error_of(gone)["reason"] == "SCHEDULE_NOT_FOUND"


def _future() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"schedule_type": "cron", "cron_expression": "61 * * * *"}, "cron_expression"),
        ({"schedule_type": "cron", "cron_expression": "0 0 * * * *"}, "cron_expression"),
        ({"schedule_type": "cron"}, "cron_expression"),
        (
            {"schedule_type": "cron", "cron_expression": "0 9 * * *", "timezone": "Mars/Base"},
            "timezone",
        ),
        (
            {"schedule_type": "fixed_time", "execution_time": "2023-06-01T12:00:00Z"},
            "execution_time",
        ),
        ({"schedule_type": "fixed_time"}, "execution_time"),
        (
            {"schedule_type": "interval", "interval_value": 0, "interval_unit": "seconds"},
            "interval_value",
        ),
        ({"schedule_type": "interval", "interval_value": 30}, "interval_unit"),
        ({"schedule_type": "interval", "interval_unit": "hours"}, "interval_value"),
        (
            {
                "schedule_type": "interval",
                "interval_value": 5,
                "interval_unit": "hours",
                "cron_expression": "0 9 * * *",
            },
            "cron_expression",
        ),
        ({"cron_expression": "0 9 * * *"}, "schedule_type"),
        (
            {"schedule_type": "cron", "cron_expression": "0 9 * * *", "catchup_window_seconds": -1},
            "catchup_window_seconds",
        ),
    ],
)
async def test_bad_schedules_are_400_naming_the_field_and_create_nothing(
    rest: httpx.AsyncClient, echo_agent_url: str, body: dict[str, Any], field: str
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url, "nightly")
    response = await rest.post(
        f"/api/v1/workflows/{workflow_id}/schedules", json={"name": "bad", **body}
    )
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["reason"] == "INVALID_SCHEDULE"
    assert list(error["fields"]) == [field]
    assert field in error["message"]
    assert (await rest.get("/api/v1/workflow_schedules")).json()["total"] == 0


async def test_schedules_of_unknown_workflows_are_404_and_updates_are_checked(
    rest: httpx.AsyncClient, echo_agent_url: str
) -> None:
    missing = await rest.post(f"/api/v1/workflows/{uuid.uuid4()}/schedules", json=SEED_BODY)
    assert missing.status_code == 404
    assert error_of(missing)["reason"] == "WORKFLOW_NOT_FOUND"

    workflow_id = await echo_workflow(rest, echo_agent_url, "nightly")
    schedule = (
        await rest.post(f"/api/v1/workflows/{workflow_id}/schedules", json=SEED_BODY)
    ).json()
    path = f"/api/v1/workflow_schedules/{schedule['id']}"
    wrong = await rest.put(path, json={"interval_value": 5})
    assert wrong.status_code == 400
    assert list(error_of(wrong)["fields"]) == ["interval_value"]
    switched = await rest.put(path, json={"schedule_type": "fixed_time"})
    assert list(error_of(switched)["fields"]) == ["execution_time"]
    assert (await rest.get(path)).json()["cron_expression"] == "0 0 * * *"

    moment = _future()
    fixed = await rest.put(path, json={"schedule_type": "fixed_time", "execution_time": moment})
    assert fixed.status_code == 200, fixed.text
    assert "cron_expression" not in fixed.json()
    assert fixed.json()["next_execution"] == moment
    assert fixed.json()["upcoming_executions"] == [moment]


# -- firing, through a real worker -------------------------------------------------------


async def _runs_of(rest: httpx.AsyncClient, workflow_id: str) -> list[dict[str, Any]]:
    found = await rest.get(f"/api/v1/runs?workflow_id={workflow_id}&page_size=100")
    items: list[dict[str, Any]] = found.json()["items"]
    return items


async def test_an_interval_schedule_runs_until_disabled_and_trigger_runs_now(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url, "nightly")
    created = await rest.post(
        f"/api/v1/workflows/{workflow_id}/schedules",
        json={
            "name": "every 2 s",
            "schedule_type": "interval",
            "interval_value": 2,
            "interval_unit": "seconds",
            "parameters": {"from": "schedule"},
        },
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    deadline = time.monotonic() + 20
    while len(await _runs_of(rest, workflow_id)) < 2:
        assert time.monotonic() < deadline, "the schedule did not fire twice"
        await asyncio.sleep(0.2)
    path = f"/api/v1/workflow_schedules/{schedule['id']}"
    disabled = await rest.put(path, json={"enabled": False})
    assert disabled.json()["state"] == "disabled"
    fired = await _runs_of(rest, workflow_id)
    for run in fired:
        assert run["triggered_by"] == f"schedule:{schedule['id']}"
        assert run["input_data"] == {"from": "schedule"}
        assert run["request_id"].startswith(f"schedule:{schedule['id']}:")
    assert len({run["request_id"] for run in fired}) == len(fired)
    await asyncio.sleep(3)
    assert len(await _runs_of(rest, workflow_id)) == len(fired), "fired while disabled"

    triggered = await rest.post(f"{path}/trigger", json={})
    assert triggered.status_code == 202, triggered.text
    run = triggered.json()
    assert run["status"] == "PENDING"
    assert run["triggered_by"] == f"schedule:{schedule['id']}"
    again = await rest.post(f"{path}/trigger", json={"request_id": "once"})
    repeat = await rest.post(f"{path}/trigger", json={"request_id": "once"})
    assert again.json()["id"] == repeat.json()["id"]

    final = (await rest.get(path)).json()
    assert final["last_execution"]["execution_id"] == again.json()["id"]
    fires = (await rest.get(f"{path}/fires")).json()
    outcomes = [fire["outcome"] for fire in fires["items"]]
    assert outcomes[:2] == ["triggered", "triggered"]
    assert outcomes.count("fired") == len(fired)
    assert (await rest.get(f"{path}/fires?outcome=triggered")).json()["total"] == 2


# -- the clock seam ----------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


@pytest.fixture
async def run_service(pool: asyncpg.Pool, redis_client: redis.Redis) -> AsyncIterator[RunService]:
    publisher = EventPublisher(redis_client)
    publisher.start()
    yield RunService(pool, Dispatcher(redis_client), publisher)
    await publisher.stop()


T0 = datetime(2026, 3, 27, 11, 0, 10, tzinfo=UTC)


async def _schedule(
    service: ScheduleService, workflow_id: str, spec: TimingSpec, **options: Any
) -> Schedule:
    defaults: dict[str, Any] = {
        "name": "s",
        "description": "",
        "parameters": {},
        "enabled": True,
        "overlap_policy": "allow",
        "catchup_window_s": None,
        "created_by": "test",
    }
    return await service.create(
        PROJECT, uuid.UUID(workflow_id), timing=spec, **(defaults | options)
    )


async def _fires(service: ScheduleService, schedule: Schedule) -> list[Any]:
    page = await service.fires(PROJECT, schedule.id, None, PageRequest(page=1, page_size=100))
    return list(reversed(page.items))


async def test_after_an_outage_the_latest_slot_fires_once_and_the_others_are_recorded(
    rest: httpx.AsyncClient, echo_agent_url: str, pool: asyncpg.Pool, run_service: RunService
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url, "nightly")
    clock = FakeClock(T0)
    service = ScheduleService(pool, run_service, clock)
    minute = TimingSpec(schedule_type="interval", interval_value=1, interval_unit="minutes")
    schedule = await _schedule(service, workflow_id, minute, catchup_window_s=45)
    assert schedule.next_fire_at == T0 + timedelta(minutes=1)

    clock.advance(minutes=1, seconds=0.5)  # on time
    assert await service.fire_due() == 1
    assert await service.fire_due() == 0
    clock.advance(minutes=9, seconds=30)  # down for 9 slots; the latest is 30 s late
    assert await service.fire_due() == 1
    current = await service.get(PROJECT, schedule.id)
    assert current.next_fire_at == T0 + timedelta(minutes=11)
    assert current.missed_count == 8
    clock.advance(minutes=10, seconds=20)  # down again; now the latest slot is 50 s late
    assert await service.fire_due() == 1

    fires = await _fires(service, schedule)
    assert [(f.outcome, f.scheduled_for - T0) for f in fires] == [
        ("fired", timedelta(minutes=1)),
        ("missed", timedelta(minutes=2)),
        ("fired", timedelta(minutes=10)),
        ("missed", timedelta(minutes=11)),
    ]
    assert (fires[1].missed_count, fires[1].missed_until) == (8, T0 + timedelta(minutes=9))
    assert (fires[3].missed_count, fires[3].missed_until) == (10, T0 + timedelta(minutes=20))
    current = await service.get(PROJECT, schedule.id)
    assert (current.missed_count, current.next_fire_at) == (18, T0 + timedelta(minutes=21))
    runs = await _runs_of(rest, workflow_id)
    assert len(runs) == 2
    assert {r["request_id"] for r in runs} == {
        f"schedule:{schedule.id}:{f.scheduled_for.isoformat()}"
        for f in fires
        if f.outcome == "fired"
    }


async def test_a_daily_local_schedule_fires_at_local_time_across_a_daylight_saving_change(
    rest: httpx.AsyncClient, echo_agent_url: str, pool: asyncpg.Pool, run_service: RunService
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url, "nightly")
    clock = FakeClock(datetime(2026, 3, 27, 12, 0, tzinfo=UTC))
    service = ScheduleService(pool, run_service, clock)
    spec = TimingSpec(schedule_type="cron", cron_expression="0 9 * * *", timezone="Europe/Zurich")
    schedule = await _schedule(service, workflow_id, spec)
    for _ in range(4 * 24):  # four days, hour by hour
        clock.advance(hours=1)
        await service.fire_due()
    fired = [f.scheduled_for for f in await _fires(service, schedule)]
    zurich = ZoneInfo("Europe/Zurich")
    assert [t.astimezone(zurich).strftime("%d %H:%M") for t in fired] == [
        "28 09:00",
        "29 09:00",
        "30 09:00",
        "31 09:00",
    ]
    assert [t.hour for t in fired] == [8, 7, 7, 7]


async def test_overlap_policies_skip_allow_and_cancel_the_previous_run(
    rest: httpx.AsyncClient, echo_agent_url: str, pool: asyncpg.Pool, run_service: RunService
) -> None:
    # No worker runs here: every run stays PENDING, so every later slot overlaps.
    workflow_id = await echo_workflow(rest, echo_agent_url, "nightly")
    clock = FakeClock(T0)
    service = ScheduleService(pool, run_service, clock)
    spec = TimingSpec(schedule_type="interval", interval_value=10, interval_unit="seconds")
    skip = await _schedule(service, workflow_id, spec, overlap_policy="skip")
    allow = await _schedule(service, workflow_id, spec, overlap_policy="allow")
    cancel = await _schedule(service, workflow_id, spec, overlap_policy="cancel_previous")
    for _ in range(3):
        clock.advance(seconds=10)
        assert await service.fire_due() == 3

    skipped = await _fires(service, skip)
    assert [f.outcome for f in skipped] == ["fired", "skipped_overlap", "skipped_overlap"]
    assert skipped[1].reason == f"run {skipped[0].run_id} has not finished"
    assert (await service.get(PROJECT, skip.id)).skipped_count == 2
    assert [f.outcome for f in await _fires(service, allow)] == ["fired"] * 3

    cancelled = await _fires(service, cancel)
    assert [f.outcome for f in cancelled] == ["fired"] * 3
    assert [f.cancelled_run_id for f in cancelled] == [
        None,
        cancelled[0].run_id,
        cancelled[1].run_id,
    ]
    first = (await rest.get(f"/api/v1/runs/{cancelled[0].run_id}")).json()
    assert first["status"] == "CANCELLED"
    assert first["cancelled_by"] == f"schedule:{cancel.id}"
    last = (await rest.get(f"/api/v1/runs/{cancelled[2].run_id}")).json()
    assert last["status"] == "PENDING"


async def test_a_schedule_of_an_inactive_workflow_does_not_fire_and_says_why(
    rest: httpx.AsyncClient, echo_agent_url: str, pool: asyncpg.Pool, run_service: RunService
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url, "nightly")
    clock = FakeClock(T0)
    service = ScheduleService(pool, run_service, clock)
    spec = TimingSpec(schedule_type="interval", interval_value=10, interval_unit="seconds")
    schedule = await _schedule(service, workflow_id, spec)
    deactivated = await rest.put(f"/api/v1/workflows/{workflow_id}", json={"status": "inactive"})
    assert deactivated.status_code == 200, deactivated.text

    shown = (await rest.get(f"/api/v1/workflow_schedules/{schedule.id}")).json()
    assert shown["state"] == "workflow_inactive"
    assert "is inactive" in shown["state_reason"]
    assert "next_execution" not in shown
    clock.advance(seconds=10)
    assert await service.fire_due() == 1
    fires = await _fires(service, schedule)
    assert [(f.outcome, f.reason) for f in fires] == [
        ("skipped_inactive", "workflow 'nightly' is inactive")
    ]
    assert await _runs_of(rest, workflow_id) == []
    triggered = await rest.post(f"/api/v1/workflow_schedules/{schedule.id}/trigger", json={})
    assert triggered.status_code == 400
    assert error_of(triggered)["reason"] == "WORKFLOW_NOT_ACTIVE"

    await rest.delete(f"/api/v1/workflows/{workflow_id}")
    shown = (await rest.get(f"/api/v1/workflow_schedules/{schedule.id}")).json()
    assert "is deleted" in shown["state_reason"]
    again = await rest.post(f"/api/v1/workflows/{workflow_id}/schedules", json=SEED_BODY)
    assert (again.status_code, error_of(again)["reason"]) == (400, "WORKFLOW_DELETED")


async def test_concurrent_schedulers_fire_each_slot_once(
    rest: httpx.AsyncClient, echo_agent_url: str, pool: asyncpg.Pool, run_service: RunService
) -> None:
    workflow_id = await echo_workflow(rest, echo_agent_url, "nightly")
    clock = FakeClock(T0)
    services = [ScheduleService(pool, run_service, clock) for _ in range(4)]
    spec = TimingSpec(schedule_type="interval", interval_value=1, interval_unit="seconds")
    created = [await _schedule(services[0], workflow_id, spec) for _ in range(5)]
    for _ in range(10):
        clock.advance(seconds=1)
        handled = await asyncio.gather(*(s.fire_due() for s in services))
        assert sum(handled) == len(created)
    runs = await _runs_of(rest, workflow_id)
    assert len(runs) == 50
    assert len({r["request_id"] for r in runs}) == 50
    for schedule in created:
        fires = await _fires(services[0], schedule)
        assert [f.scheduled_for - T0 for f in fires] == [timedelta(seconds=s) for s in range(1, 11)]


# -- crashes -----------------------------------------------------------------------------


async def test_kill_9_of_firing_workers_neither_loses_nor_doubles_a_slot(
    rest: httpx.AsyncClient,
    echo_agent_url: str,
    database_url: str,
    redis_url: str,
    pool: asyncpg.Pool,
    worker_processes: list[subprocess.Popen[bytes]],
) -> None:
    """Two ``baton worker`` processes fire a 1-second schedule while one of them is
    killed with SIGKILL at random moments and restarted: every slot from the first to
    the last is fired or recorded as missed exactly once, and each fire has one run."""
    workflow_id = await echo_workflow(rest, echo_agent_url, "nightly")
    alive = [worker_process(database_url, redis_url) for _ in range(2)]
    worker_processes.extend(alive)
    created = await rest.post(
        f"/api/v1/workflows/{workflow_id}/schedules",
        json={
            "name": "every second",
            "schedule_type": "interval",
            "interval_value": 1,
            "interval_unit": "seconds",
            "overlap_policy": "allow",
        },
    )
    schedule_id = created.json()["id"]
    chaos = random.Random(11)
    deadline = time.monotonic() + 12
    kills = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(chaos.uniform(0.3, 1.5))
        victim = alive.pop(chaos.randrange(len(alive)))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        kills += 1
        replacement = worker_process(database_url, redis_url)
        worker_processes.append(replacement)
        alive.append(replacement)
    await asyncio.sleep(2.5)
    await rest.put(f"/api/v1/workflow_schedules/{schedule_id}", json={"enabled": False})
    await asyncio.sleep(0.5)  # a round that claimed a slot before the update commits it

    fires = await pool.fetch(
        "SELECT scheduled_for, outcome, run_id, missed_count, missed_until FROM schedule_fires"
        " WHERE schedule_id = $1 ORDER BY scheduled_for",
        uuid.UUID(schedule_id),
    )
    assert kills >= 5
    # Every slot is accounted for once: fired, or recorded as missed while both workers
    # were down or starting (the catch-up rule fires only the latest of those).
    slots: list[datetime] = []
    for fire in fires:
        if fire["outcome"] == "missed":
            missed = fire["missed_count"]
            slots += [fire["scheduled_for"] + timedelta(seconds=i) for i in range(missed)]
            assert slots[-1] == fire["missed_until"]
        else:
            assert fire["outcome"] == "fired"
            slots.append(fire["scheduled_for"])
    assert len(slots) >= 14
    assert {b - a for a, b in itertools.pairwise(slots)} == {timedelta(seconds=1)}
    fired = [f for f in fires if f["outcome"] == "fired"]
    # Slots pass unfired while both workers are down or starting; how many depends on how
    # fast a worker starts (seconds on a slow machine), so the bound only says that a
    # good share of the slots fire rather than being swallowed by the catch-up rule.
    assert len(fired) >= len(slots) / 3
    runs = await pool.fetch(
        "SELECT id, request_id FROM runs WHERE triggered_by = $1", f"schedule:{schedule_id}"
    )
    assert sorted(r["id"] for r in runs) == sorted(f["run_id"] for f in fired)
    assert len({r["request_id"] for r in runs}) == len(runs)
