"""An agent change applies to every step that starts after the change has returned,
though the worker caches agents (through Envoy, with a real worker and real agents)."""

from __future__ import annotations

from typing import Any

import httpx

from baton_server.executor.worker import Worker
from tests.agents.process import unused_loopback_port
from tests.test_rest_api import assert_plain_json, create_agent
from tests.test_rest_events import execute


async def finished(rest: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = assert_plain_json(
        await rest.get(f"/api/v1/runs/{run_id}/wait?timeout=30s"), 200
    )
    return run


async def test_a_changed_url_applies_to_the_very_next_run(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    agent = await create_agent(rest, "moving", url=echo_agent_url)
    body = {"name": "w", "start_step": "s", "steps": {"s": {"agent_name": "moving"}}}
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    # The worker now has the agent cached.
    assert (await finished(rest, await execute(rest, workflow["id"])))["status"] == "COMPLETED"

    nowhere = f"http://127.0.0.1:{unused_loopback_port()}"
    changed = await rest.put(
        f"/api/v1/agents/{agent['id']}", json={"url": nowhere, "max_retries": 0}
    )
    assert changed.status_code == 200, changed.text
    failed = await finished(rest, await execute(rest, workflow["id"]))
    assert failed["status"] == "FAILED"
    assert "Step 's' failed" in failed["error_message"]

    back = await rest.put(f"/api/v1/agents/{agent['id']}", json={"url": echo_agent_url})
    assert back.status_code == 200, back.text
    assert (await finished(rest, await execute(rest, workflow["id"])))["status"] == "COMPLETED"

    deactivated = await rest.put(f"/api/v1/agents/{agent['id']}", json={"status": "inactive"})
    assert deactivated.status_code == 200, deactivated.text
    refused = await finished(rest, await execute(rest, workflow["id"]))
    assert refused["status"] == "FAILED"
    assert "Agent 'moving' not found or inactive" in refused["error_message"]


async def test_a_later_step_of_a_running_run_calls_the_changed_agent(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await create_agent(rest, "slow", url=echo_agent_url)
    second = await create_agent(rest, "second", url=echo_agent_url)
    body = {
        "name": "two",
        "start_step": "a",
        "steps": {
            "a": {
                "agent_name": "slow",
                "next_step": "b",
                "input_mapping": {"_mode": "sleep", "_sleep_ms": 600},
            },
            # Cached by the worker when the run starts (it looks up every agent early).
            "b": {"agent_name": "second"},
        },
    }
    workflow = assert_plain_json(await rest.post("/api/v1/workflows", json=body), 201)
    warm = await finished(rest, await execute(rest, workflow["id"]))
    assert warm["status"] == "COMPLETED"

    run_id = await execute(rest, workflow["id"])
    nowhere = f"http://127.0.0.1:{unused_loopback_port()}"
    changed = await rest.put(
        f"/api/v1/agents/{second['id']}", json={"url": nowhere, "max_retries": 0}
    )
    assert changed.status_code == 200, changed.text
    run = await finished(rest, run_id)
    assert run["status"] == "FAILED"
    assert "Step 'b' failed" in run["error_message"]
