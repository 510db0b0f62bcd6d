"""Retries of a step: one idempotency key across attempts, the attempt number beside it,
the agent's Retry-After honoured, and jitter in the backoff."""

from __future__ import annotations

import time

from baton.v1 import agents_pb2_grpc, runs_pb2, runs_pb2_grpc, workflows_pb2_grpc
from baton_server.agents.model import RetryPolicy
from baton_server.executor.backoff import MAX_RETRY_AFTER_MS, retry_delay_ms
from baton_server.executor.worker import Worker
from tests.runs_support import chain, create_workflow, execute, register_agent
from tests.test_agent_client import Reply, ScriptedServer, Seen

POLICY = RetryPolicy(max_retries=3, initial_delay_ms=1000, max_delay_ms=8000)


def test_backoff_is_half_fixed_half_random_and_capped() -> None:
    assert retry_delay_ms(POLICY, 0, uniform=lambda: 0.0) == 500
    assert retry_delay_ms(POLICY, 0, uniform=lambda: 1.0) == 1000
    assert retry_delay_ms(POLICY, 2, uniform=lambda: 0.5) == 3000
    assert retry_delay_ms(POLICY, 10, uniform=lambda: 1.0) == 8000  # max_delay_ms
    delays = {retry_delay_ms(POLICY, 1) for _ in range(50)}
    assert len(delays) > 1  # jitter
    assert all(1000 <= d <= 2000 for d in delays)


def test_retry_after_is_a_lower_bound_up_to_five_minutes() -> None:
    assert retry_delay_ms(POLICY, 0, retry_after_s=7, uniform=lambda: 0.0) == 7000
    assert retry_delay_ms(POLICY, 3, retry_after_s=0.1, uniform=lambda: 1.0) == 8000
    assert retry_delay_ms(POLICY, 0, retry_after_s=10_000) == MAX_RETRY_AFTER_MS


async def test_a_retried_step_keeps_its_key_counts_attempts_and_waits_retry_after(
    stubs: tuple[
        agents_pb2_grpc.AgentServiceAsyncStub,
        workflows_pb2_grpc.WorkflowServiceAsyncStub,
        runs_pb2_grpc.RunServiceAsyncStub,
    ],
    worker: Worker,
) -> None:
    agents, workflows, runs = stubs
    calls: list[tuple[float, Seen]] = []

    def answer(seen: Seen) -> Reply:
        calls.append((time.monotonic(), seen))
        if len(calls) == 1:
            return Reply(503, {"error": "busy"}, headers={"Retry-After": "1"})
        return Reply(200, {"done": True})

    with ScriptedServer() as server:
        server.routes["POST /step"] = answer
        await register_agent(
            agents,
            "flaky-http",
            f"{server.url}/step",
            protocol="http",
            retry_config={"max_retries": 2, "initial_delay_ms": 100},
        )
        workflow = await create_workflow(
            workflows,
            chain(("only", "flaky-http", {})),
        )
        run = await execute(runs, workflow.id, {})
        done = await runs.WaitRun(runs_pb2.WaitRunRequest(run_id=run.id))
    assert done.status == runs_pb2.Run.COMPLETED
    (first_at, first), (second_at, second) = calls
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == f"{run.id}/only"
    assert (first.headers["baton-attempt"], second.headers["baton-attempt"]) == ("1", "2")
    # The policy alone would wait 50-100 ms; the agent asked for a second.
    assert second_at - first_at >= 1.0
