"""Execution statistics through Envoy: a hand-computed history, months in a non-UTC
zone, retries taken back out, the rollups folded or not, and a real run with usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from baton_server.executor.worker import Worker
from baton_server.stats.rollups import fold
from tests.rest_support import echo_workflow, error_of

# (workflow, status, created, seconds it took, cost, input tokens, output tokens)
HISTORY = [
    ("a", "COMPLETED", datetime(2026, 10, 31, 23, 0, tzinfo=UTC), 1800, 1.0, 100, 50),
    ("a", "FAILED", datetime(2026, 10, 15, 10, 0, tzinfo=UTC), 10, 0.5, 10, 0),
    ("a", "CANCELLED", datetime(2026, 11, 2, 0, 0, tzinfo=UTC), 60, 0.0, 0, 0),
    ("b", "COMPLETED", datetime(2026, 11, 3, 12, 0, tzinfo=UTC), 20, 2.0, 1000, 500),
]


async def _history(rest: httpx.AsyncClient, pool: asyncpg.Pool, agent_url: str) -> dict[str, Any]:
    """The runs of HISTORY, ended as written there (no worker: the test ends them), and
    one AI call for each run that cost something."""
    workflows = {name: await echo_workflow(rest, agent_url, name) for name in ("a", "b")}
    run_ids = []
    for workflow, status, created, seconds, cost, tokens_in, tokens_out in HISTORY:
        started = await rest.post(f"/api/v1/workflows/{workflows[workflow]}/execute", json={})
        run_id = started.json()["run_id"]
        ended = created + timedelta(seconds=seconds)
        end_column = "cancelled_at" if status == "CANCELLED" else "completed_at"
        await pool.execute(
            f"UPDATE runs SET status = $2, created_at = $3, {end_column} = $4, total_cost = $5,"
            " tokens_input = $6, tokens_output = $7 WHERE id = $1",
            run_id,
            status,
            created,
            ended,
            cost,
            tokens_in,
            tokens_out,
        )
        if cost:
            await pool.execute(
                "INSERT INTO ai_calls (run_id, step_id, attempt, model, operation, tokens_input,"
                " tokens_output, cost, unpriced, created_at)"
                " VALUES ($1, 's1', 1, $2, 's1', $3, $4, $5, false, $6)",
                run_id,
                f"model-{workflow}",
                tokens_in,
                tokens_out,
                cost,
                ended,
            )
        run_ids.append(run_id)
    return {"workflows": workflows, "runs": run_ids}


async def _stats(rest: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    response = await rest.get(f"/api/v1/stats{query}")
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()
    return stats


async def test_stats_of_a_hand_computed_history(
    rest: httpx.AsyncClient, pool: asyncpg.Pool, echo_agent_url: str
) -> None:
    made = await _history(rest, pool, echo_agent_url)
    expected_utc = {
        "total_executions": 4,
        "successful_executions": 2,
        "failed_executions": 1,
        "cancelled_executions": 1,
        "average_duration": (1800 + 10 + 60 + 20) / 4,
        "total_cost": 3.5,
        "total_tokens": "1660",
        "most_used_workflow": "a",
        "monthly_stats": {
            "2026-10": {"executions": 2, "cost": 1.5, "tokens": "160"},
            "2026-11": {"executions": 2, "cost": 2.0, "tokens": "1500"},
        },
        "cost_breakdown": {"model-a": 1.5, "model-b": 2.0},
        "tokens_by_model": {
            "model-a": {"input": "110", "output": "50"},
            "model-b": {"input": "1000", "output": "500"},
        },
        "time_zone": "UTC",
    }
    for folded in (False, True):  # the same before and after the deltas are folded
        if folded:
            assert await fold(pool)
        stats = await _stats(rest)
        breakdown = stats.pop("workflow_breakdown")
        assert stats == expected_utc
        assert breakdown["a"] == pytest.approx(
            {
                "count": 3,
                "success_rate": 1 / 3,
                "avg_cost": 0.5,
                "average_duration": (1800 + 10 + 60) / 3,
                "workflow_id": made["workflows"]["a"],
            }
        )
        assert breakdown["b"]["count"] == 1
        assert breakdown["b"]["avg_cost"] == 2.0

    # In Paris the first run ended on 1 November (00:30 local time).
    paris = await _stats(rest, "?time_zone=Europe/Paris")
    assert paris["monthly_stats"] == {
        "2026-10": {"executions": 1, "cost": 0.5, "tokens": "10"},
        "2026-11": {"executions": 3, "cost": 3.0, "tokens": "1650"},
    }
    november = await _stats(rest, "?start_time=2026-11-01T00:00:00Z")
    assert (november["total_executions"], november["total_cost"]) == (2, 2.0)
    only_b = await _stats(rest, f"?workflow_id={made['workflows']['b']}")
    assert (only_b["total_executions"], list(only_b["workflow_breakdown"])) == (1, ["b"])
    assert (await _stats(rest, "?project_id=not-a-project"))["total_executions"] == 0

    # A retried run's earlier end no longer counts.
    retried = await rest.post(f"/api/v1/runs/{made['runs'][1]}/retry", json={})
    assert retried.status_code == 202, retried.text
    after = await _stats(rest)
    assert (after["total_executions"], after["failed_executions"]) == (3, 0)
    assert after["total_cost"] == pytest.approx(3.0)

    bad = await rest.get("/api/v1/stats?time_zone=Mars/Olympus")
    assert bad.status_code == 400
    assert error_of(bad)["fields"] == {"time_zone": "an IANA time zone such as Europe/Paris"}


async def test_a_real_run_is_counted_with_its_usage(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    usage = {"model": "m", "input_tokens": 7, "output_tokens": 3, "cost_usd": 0.75}
    workflow_id = await echo_workflow(rest, echo_agent_url, "counted")
    await rest.put(
        f"/api/v1/workflows/{workflow_id}",
        json={"steps": {"s1": {"agent_name": "echo-counted", "input_mapping": {"_usage": usage}}}},
    )
    started = await rest.post(f"/api/v1/workflows/{workflow_id}/execute", json={})
    run = (await rest.get(f"/api/v1/runs/{started.json()['run_id']}/wait?timeout=30s")).json()
    assert run["status"] == "COMPLETED"
    stats = await _stats(rest)
    month = datetime.fromisoformat(run["completed_at"]).strftime("%Y-%m")
    assert stats["monthly_stats"] == {month: {"executions": 1, "cost": 0.75, "tokens": "10"}}
    assert stats["cost_breakdown"] == {"m": 0.75}
    assert stats["workflow_breakdown"]["counted"]["success_rate"] == 1
