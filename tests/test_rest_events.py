"""Run events over REST as Server-Sent Events, read incrementally as curl -N would:
live delivery, resume by `after_sequence` without gaps or duplicates, and the feeds."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from baton_server.executor.worker import Worker
from tests.rest_support import error_of, sse_events
from tests.test_rest_api import assert_plain_json, create_agent

SLOW = {"_mode": "sleep", "_sleep_ms": 300}


async def sleepy_workflow(rest: httpx.AsyncClient, agent_url: str, name: str) -> str:
    """Three steps of an echo agent, the first two taking 300 ms each."""
    await create_agent(rest, f"echo-{name}", url=agent_url)
    agent = f"echo-{name}"
    body = {
        "name": name,
        "start_step": "a",
        "steps": {
            "a": {"agent_name": agent, "next_step": "b", "input_mapping": SLOW},
            "b": {"agent_name": agent, "next_step": "c", "input_mapping": SLOW},
            "c": {"agent_name": agent, "input_mapping": {"x": "${b.output.echo}"}},
        },
    }
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    return str(workflow["id"])


async def execute(rest: httpx.AsyncClient, workflow_id: str) -> str:
    run = assert_plain_json(
        await rest.post(f"/api/v1/workflows/{workflow_id}/execute", json={"input_data": {}}), 202
    )
    return str(run["run_id"])


def sequence(event: dict[str, Any]) -> int:
    # int64 is a JSON string in the proto3 mapping.
    return int(event["sequence"])


async def test_run_events_arrive_live_and_resume_after_a_disconnect_without_gaps(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    run_id = await execute(rest, await sleepy_workflow(rest, echo_agent_url, "sse"))
    first: list[dict[str, Any]] = []
    async with rest.stream("GET", f"/api/v1/runs/{run_id}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        async for event in sse_events(response):
            first.append(event)
            if event["type"] == "step_completed":
                # Delivered while the run is still going: step b sleeps for 300 ms.
                run = assert_plain_json(await rest.get(f"/api/v1/runs/{run_id}"), 200)
                assert run["status"] == "RUNNING"
                break  # disconnect mid-run
    snapshot = first[0]
    assert snapshot["type"] == "state_sync"
    assert snapshot["run"]["run_id"] == run_id
    assert {s["step_id"] for s in snapshot["steps"]} == {"a", "b", "c"}

    async with rest.stream(
        "GET", f"/api/v1/runs/{run_id}/events?after_sequence={sequence(first[-1])}"
    ) as response:
        assert response.status_code == 200
        rest_of_run = [event async for event in sse_events(response)]  # ends by itself
    assert rest_of_run[0]["type"] != "state_sync"

    sequences = [sequence(e) for e in first[1:] + rest_of_run]
    assert sequences == list(range(sequence(snapshot) + 1, sequences[-1] + 1))
    last = rest_of_run[-1]
    assert (last["type"], last["status"], last["terminal"]) == ("run_status", "COMPLETED", True)
    assert last["output"]["x"] is True  # the last step echoed b's output
    assert not any(e["terminal"] for e in first + rest_of_run[:-1])

    # Asking again after the end replays exactly the same events, then ends.
    async with rest.stream(
        "GET", f"/api/v1/runs/{run_id}/events?after_sequence={sequence(first[-1])}"
    ) as response:
        assert [event async for event in sse_events(response)] == rest_of_run


async def test_watching_an_unknown_run_is_a_404_json_error(rest: httpx.AsyncClient) -> None:
    response = await rest.get(f"/api/v1/runs/run-{uuid.uuid4()}/events")
    assert response.status_code == 404
    assert error_of(response)["reason"] == "RUN_NOT_FOUND"


async def collect_until_completed(
    rest: httpx.AsyncClient, path: str, seen: list[dict[str, Any]], run_ids: set[str]
) -> None:
    """Read a feed into ``seen`` until every run in ``run_ids`` has COMPLETED.

    ``run_ids`` fills in as the test starts runs; a feed's first event can arrive before
    the call that started its run has returned, so an empty set means "not yet".
    """
    async with rest.stream("GET", path) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        async for event in sse_events(response):
            seen.append(event)
            done = {e["run_id"] for e in seen if e["status"] == "COMPLETED"}
            if run_ids and run_ids <= done:
                return


async def test_run_feeds_stream_status_changes_of_all_runs_or_one_workflow(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    watched = await sleepy_workflow(rest, echo_agent_url, "watched")
    other = await sleepy_workflow(rest, echo_agent_url, "other")
    everything: list[dict[str, Any]] = []
    one_workflow: list[dict[str, Any]] = []
    finished_only: list[dict[str, Any]] = []
    run_ids: set[str] = set()
    watched_ids: set[str] = set()
    readers = [
        asyncio.create_task(collect_until_completed(rest, "/api/v1/events", everything, run_ids)),
        asyncio.create_task(
            collect_until_completed(
                rest, f"/api/v1/workflows/{watched}/events", one_workflow, watched_ids
            )
        ),
        asyncio.create_task(
            collect_until_completed(
                rest, "/api/v1/events?statuses=COMPLETED&statuses=FAILED", finished_only, run_ids
            )
        ),
    ]
    # The feeds carry only what happens after they subscribe, and answering with headers
    # waits for the first event: give the subscriptions a moment before the runs start.
    await asyncio.sleep(0.5)
    watched_ids.add(await execute(rest, watched))
    run_ids.update(watched_ids)
    run_ids.add(await execute(rest, other))
    await asyncio.wait_for(asyncio.gather(*readers), 30)

    assert {e["run_id"] for e in everything} == run_ids
    assert all(e["type"] == "run_status" for e in everything)
    statuses = [e["status"] for e in everything if e["run_id"] in watched_ids]
    assert statuses[-1] == "COMPLETED"
    assert "RUNNING" in statuses
    assert {e["run_id"] for e in one_workflow} == watched_ids
    assert {e["run"]["workflow_id"] for e in one_workflow} == {watched}
    assert {e["status"] for e in finished_only} == {"COMPLETED"}
