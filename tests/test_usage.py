"""AI usage through Envoy: model prices, and the calls real agents report (A2A metadata
and plain HTTP answers) accounted per call, step, attempt and run, and in events."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

import baton_sdk
from baton_sdk import AlreadyExistsError, NotFoundError, TokenUsage, UsageTotals
from baton_server.app import GrpcApp
from baton_server.executor.worker import Worker
from baton_server.usage.reported import read_usage
from tests.agents.http_agent import HttpAgent
from tests.rest_support import error_of, sse_events
from tests.sdk_support import linear_workflow

OPUS = "anthropic/claude-opus-4.1"
SONNET = "anthropic/claude-sonnet-4.5"


def test_usage_is_read_leniently() -> None:
    usage, problems = read_usage(
        [
            {"model": SONNET, "input_tokens": 10, "output_tokens": 5},
            [
                {"model": "gpt-4o", "prompt_tokens": 3.0, "completion_tokens": 4},
                {"model": OPUS, "input_tokens": -1, "output_tokens": 2},
                {"model": OPUS, "input_tokens": "many"},
                {"input_tokens": 1},
                {"model": OPUS},
                {"model": OPUS, "output_tokens": 1, "cost_usd": "free"},
                {"model": OPUS, "output_tokens": True},
                "text",
            ],
        ]
    )
    assert [(u.model, u.input_tokens, u.output_tokens) for u in usage] == [
        (SONNET, 10, 5),
        ("gpt-4o", 3, 4),
    ]
    assert len(problems) == 7
    assert "input_tokens must be a whole number" in problems[0]
    assert "model must be a non-empty string" in problems[2]
    assert "no input_tokens or output_tokens" in problems[3]
    assert "cost_usd" in problems[4]
    assert "not an object" in problems[6]


async def test_model_prices_are_a_resource(rest: httpx.AsyncClient) -> None:
    created = await rest.post(
        "/api/v1/model_prices",
        json={"model": SONNET, "input_usd_per_million": 3, "output_usd_per_million": 15},
    )
    assert created.status_code == 201, created.text
    price = created.json()
    assert (price["model"], price["input_usd_per_million"], price["output_usd_per_million"]) == (
        SONNET,
        3,
        15,
    )
    again = await rest.post("/api/v1/model_prices", json={"model": SONNET})
    assert again.status_code == 409
    assert error_of(again)["reason"] == "MODEL_PRICE_ALREADY_EXISTS"

    path = f"/api/v1/model_prices/{price['id']}"
    updated = await rest.put(path, json={"output_usd_per_million": 12.5})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["input_usd_per_million"], updated.json()["output_usd_per_million"]) == (
        3,
        12.5,
    )
    listed = (await rest.get("/api/v1/model_prices")).json()
    assert [p["model"] for p in listed["items"]] == [SONNET]
    assert listed["total"] == 1
    assert (await rest.get(path)).json()["output_usd_per_million"] == 12.5

    bad = await rest.post("/api/v1/model_prices", json={"model": OPUS, "input_usd_per_million": -1})
    assert bad.status_code == 400
    assert "input_usd_per_million" in error_of(bad)["fields"]
    assert (await rest.get("/api/v1/model_prices")).json()["total"] == 1  # nothing created

    assert (await rest.delete(path)).status_code == 200
    missing = await rest.get(path)
    assert missing.status_code == 404
    assert error_of(missing)["reason"] == "MODEL_PRICE_NOT_FOUND"


async def _workflow(rest: httpx.AsyncClient, agent_url: str, steps: dict[str, Any]) -> str:
    name = f"usage-{uuid.uuid4().hex[:8]}"
    agent = await rest.post("/api/v1/agents", json={"name": name, "url": agent_url, **_fast()})
    assert agent.status_code == 201, agent.text
    ids = list(steps)
    body = {
        "name": name,
        "start_step": ids[0],
        "steps": {
            step_id: {
                "agent_name": name,
                "input_mapping": mapping,
                **({"next_step": ids[index + 1]} if index + 1 < len(ids) else {}),
            }
            for index, (step_id, mapping) in enumerate(steps.items())
        },
    }
    created = await rest.post("/api/v1/workflows", json=body)
    assert created.status_code == 201, created.text
    workflow_id: str = created.json()["id"]
    return workflow_id


def _fast() -> dict[str, Any]:
    return {"retry_config": {"max_retries": 2, "initial_delay_ms": 100, "max_delay_ms": 1000}}


async def _run(rest: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    started = await rest.post(f"/api/v1/workflows/{workflow_id}/execute", json={})
    assert started.status_code == 202, started.text
    run: dict[str, Any] = (
        await rest.get(f"/api/v1/runs/{started.json()['run_id']}/wait?timeout=30s")
    ).json()
    assert run["status"] == "COMPLETED", run
    return run


async def test_a2a_usage_is_accounted_per_call_step_and_run(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    await rest.post(
        "/api/v1/model_prices",
        json={"model": SONNET, "input_usd_per_million": 3, "output_usd_per_million": 15},
    )
    key = uuid.uuid4().hex
    workflow_id = await _workflow(
        rest,
        echo_agent_url,
        {
            # In the artifact's metadata: a priced model and an unpriced one.
            "research": {
                "_usage": [
                    {"model": SONNET, "input_tokens": 8000, "output_tokens": 4000},
                    {"model": "local/llama", "input_tokens": 100, "output_tokens": 50},
                ]
            },
            # In the task's metadata, with the agent's own cost; the first attempt fails
            # and reports usage too: retried attempts cost.
            "write": {
                "_mode": "flaky",
                "_fail_times": 1,
                "_key": key,
                "_usage": {
                    "model": OPUS,
                    "input_tokens": 1000,
                    "output_tokens": 500,
                    "cost_usd": 0.25,
                    "operation": "draft",
                },
                "_usage_in": "task",
            },
            # In the final status message's metadata, OpenAI's names; one bad entry.
            "review": {
                "_usage": [
                    {"model": SONNET, "prompt_tokens": 2000, "completion_tokens": 1000},
                    {"model": SONNET, "input_tokens": -5},
                ],
                "_usage_in": "status",
            },
        },
    )
    run = await _run(rest, workflow_id)

    research_cost = (8000 * 3 + 4000 * 15) / 1e6
    review_cost = (2000 * 3 + 1000 * 15) / 1e6
    total = research_cost + 2 * 0.25 + review_cost
    assert run["total_cost"] == pytest.approx(total)
    assert run["token_usage"] == {
        "total": str(8000 + 4000 + 150 + 2 * 1500 + 3000),
        "input": str(8000 + 100 + 2000 + 2000),
        "output": str(4000 + 50 + 1000 + 1000),
        "by_model": {
            SONNET: {"input": "10000", "output": "5000"},
            "local/llama": {"input": "100", "output": "50"},
            OPUS: {"input": "2000", "output": "1000"},
        },
    }
    calls = [
        (c["step_id"], c["attempt"], c["model"], c["operation"], c.get("unpriced", False))
        for c in run["ai_calls"]
    ]
    assert calls == [
        ("research", 1, SONNET, "research", False),
        ("research", 1, "local/llama", "research", True),
        ("write", 1, OPUS, "draft", False),
        ("write", 2, OPUS, "draft", False),
        ("review", 1, SONNET, "review", False),
    ]
    assert run["ai_calls"][1].get("cost", 0) == 0
    assert all(c["timestamp"] for c in run["ai_calls"])

    steps = {
        s["step_id"]: s for s in (await rest.get(f"/api/v1/runs/{run['run_id']}/steps")).json()
    }
    assert steps["write"]["total_cost"] == pytest.approx(0.5)
    assert steps["write"]["token_usage"]["total"] == "3000"
    assert [c["attempt"] for c in steps["write"]["ai_calls"]] == [1, 2]
    assert steps["review"]["total_cost"] == pytest.approx(review_cost)

    logs = (await rest.get(f"/api/v1/runs/{run['run_id']}/logs")).json()["logs"]
    warnings = [line["message"] for line in logs if line["level"] == "warning"]
    assert any("review" in w and "usage entry 1 ignored" in w for w in warnings), warnings

    # Listed runs carry the totals and the tokens by model; filter and sort on cost.
    listed = (await rest.get(f"/api/v1/runs?workflow_id={workflow_id}")).json()["items"]
    assert listed[0]["total_cost"] == pytest.approx(total)
    assert listed[0]["token_usage"]["by_model"][OPUS] == {"input": "2000", "output": "1000"}
    assert listed[0]["ai_calls"] == []  # only the totals in lists
    cheap = await rest.get(f"/api/v1/runs?workflow_id={workflow_id}&max_total_cost=0.01")
    assert cheap.json()["items"] == []
    dear = await rest.get(
        f"/api/v1/runs?workflow_id={workflow_id}&min_total_cost=0.5&sort_by=total_cost"
    )
    assert [r["run_id"] for r in dear.json()["items"]] == [run["run_id"]]


async def test_events_carry_each_attempts_usage_and_the_running_totals(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    usage = {"model": OPUS, "input_tokens": 10, "output_tokens": 20, "cost_usd": 0.125}
    workflow_id = await _workflow(
        rest, echo_agent_url, {"a": {"_usage": usage}, "b": {}, "c": {"_usage": usage}}
    )
    run = await _run(rest, workflow_id)
    path = f"/api/v1/runs/{run['run_id']}/events"
    async with rest.stream("GET", f"{path}?after_sequence=1") as response:
        seen = [event async for event in sse_events(response)]
    completed = {e["step_id"]: e for e in seen if e.get("type") == "step_completed"}
    assert completed["a"]["usage"] == {"input_tokens": "10", "output_tokens": "20", "cost": 0.125}
    assert completed["a"]["run_usage"]["cost"] == 0.125
    assert "usage" not in completed["b"]  # its agent reported none
    assert completed["c"]["run_usage"] == {
        "input_tokens": "20",
        "output_tokens": "40",
        "cost": 0.25,
    }
    # A watcher that starts late gets it all in the snapshot.
    async with rest.stream("GET", path) as response:
        snapshot = await anext(sse_events(response))
    assert snapshot["type"] == "state_sync"
    assert snapshot["run"]["total_cost"] == 0.25
    assert [c["step_id"] for c in snapshot["run"]["ai_calls"]] == ["a", "c"]
    assert {s["step_id"]: s["total_cost"] for s in snapshot["steps"]} == {
        "a": 0.125,
        "b": 0,
        "c": 0.125,
    }


async def test_plain_http_agents_report_usage_at_the_top_of_their_answer(
    rest: httpx.AsyncClient, worker: Worker
) -> None:
    await rest.post(
        "/api/v1/model_prices",
        json={"model": "gpt-4o", "input_usd_per_million": 2.5, "output_usd_per_million": 10},
    )

    def respond(payload: Any, headers: dict[str, str]) -> tuple[int, Any]:
        # OpenAI's answer shape: the model beside `usage`, prompt/completion tokens.
        return 200, {
            "model": "gpt-4o",
            "choices": [{"message": {"content": "hi"}}],
            "usage": {"prompt_tokens": 400, "completion_tokens": 100, "total_tokens": 500},
        }

    with HttpAgent(respond) as agent:
        name = f"http-{uuid.uuid4().hex[:8]}"
        created = await rest.post(
            "/api/v1/agents", json={"name": name, "url": agent.url, "protocol": "http"}
        )
        assert created.status_code == 201, created.text
        workflow = await rest.post(
            "/api/v1/workflows",
            json={"name": name, "start_step": "s", "steps": {"s": {"agent_name": name}}},
        )
        run = await _run(rest, workflow.json()["id"])
    assert run["total_cost"] == pytest.approx((400 * 2.5 + 100 * 10) / 1e6)
    assert run["token_usage"]["by_model"] == {"gpt-4o": {"input": "400", "output": "100"}}
    # The output is the agent's answer, usage included.
    assert json.loads(json.dumps(run["output"]))["usage"]["total_tokens"] == 500


async def test_runs_without_usage_cost_nothing(
    rest: httpx.AsyncClient, worker: Worker, echo_agent_url: str
) -> None:
    run = await _run(rest, await _workflow(rest, echo_agent_url, {"only": {}}))
    assert run["total_cost"] == 0
    assert run["token_usage"] == {"total": "0", "input": "0", "output": "0", "by_model": {}}
    assert run["ai_calls"] == []


async def test_the_sdk_types_usage_and_manages_prices(
    grpc_app: GrpcApp, worker: Worker, echo_agent_url: str
) -> None:
    async with baton_sdk.connect(f"127.0.0.1:{grpc_app.port}") as client:
        price = await client.model_prices.create(
            SONNET, input_usd_per_million=3, output_usd_per_million=15
        )
        assert [p.model async for p in client.model_prices.list()] == [SONNET]
        with pytest.raises(AlreadyExistsError):
            await client.model_prices.create(
                SONNET, input_usd_per_million=1, output_usd_per_million=1
            )
        price = await client.model_prices.update(price.id, input_usd_per_million=6)
        assert (price.input_usd_per_million, price.output_usd_per_million) == (6, 15)

        await client.agents.create(name="llm", url=echo_agent_url)
        usage = {"model": SONNET, "input_tokens": 1000, "output_tokens": 100}
        workflow = await linear_workflow(client, "llm", {"_usage": usage}, {"_usage": usage})
        run = await client.runs.execute(workflow.id)
        events = [event async for event in run.watch()]
        run = await run.wait(timeout=30)
        assert run.total_cost == pytest.approx(2 * (1000 * 6 + 100 * 15) / 1e6)
        assert run.token_usage == TokenUsage(
            total=2200, input=2000, output=200, by_model={SONNET: (2000, 200)}
        )
        assert [(c.step_id, c.tokens_input, c.unpriced) for c in run.ai_calls] == [
            ("s1", 1000, False),
            ("s2", 1000, False),
        ]
        steps = await client.runs.steps(run.id)
        assert [s.total_cost for s in steps] == [pytest.approx(run.total_cost / 2)] * 2
        totals = [e.run_usage for e in events if e.run_usage is not None]
        assert totals[-1] == UsageTotals(input_tokens=2000, output_tokens=200, cost=run.total_cost)

        await client.model_prices.delete(price.id)
        with pytest.raises(NotFoundError):
            await client.model_prices.get(price.id)
