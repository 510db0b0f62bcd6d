"""Agents that answer what PostgreSQL cannot store, and the journal that must not wedge.

An answer holding U+0000 is refused by the agent client (the step fails, naming it). An
answer PostgreSQL refuses for a reason nobody foresaw (here a lone UTF-16 surrogate,
which jsonb rejects) is isolated by the journal: the change is retried alone, refused,
and its run fails with PostgreSQL's reason, while every other run of the worker goes on.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from baton.v1 import agents_pb2_grpc, runs_pb2, runs_pb2_grpc, workflows_pb2_grpc
from baton_server.executor.journal import ChangeRefused, Journal, RunChange
from baton_server.executor.worker import Worker
from tests.runs_support import chain, create_workflow, execute, register_agent, wait_for
from tests.test_agent_client import Reply, ScriptedServer

if TYPE_CHECKING:
    Stubs = tuple[
        agents_pb2_grpc.AgentServiceAsyncStub,
        workflows_pb2_grpc.WorkflowServiceAsyncStub,
        runs_pb2_grpc.RunServiceAsyncStub,
    ]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"text": "a\u0000b"}, "answer holds a NUL character"),
        ({"text": "\ud800"}, "its progress could not be recorded: invalid input syntax"),
    ],
    ids=["nul", "lone-surrogate"],
)
async def test_an_unstorable_answer_fails_its_run_and_no_other(
    stubs: Stubs, worker: Worker, answer: Any, error: str
) -> None:
    agents, workflows, runs = stubs
    with ScriptedServer() as server:
        server.routes["POST /bad"] = Reply(200, answer)
        server.routes["POST /ok"] = Reply(200, {"fine": True})
        await register_agent(agents, "bad", f"{server.url}/bad", protocol="http")
        await register_agent(agents, "ok", f"{server.url}/ok", protocol="http")
        bad = await create_workflow(workflows, chain(("only", "bad", {})))
        good = await create_workflow(
            workflows, chain(("a", "ok", {}), ("b", "ok", {}), name="good")
        )
        bad_run = await execute(runs, bad.id, {})
        good_runs = [await execute(runs, good.id, {}) for _ in range(5)]
        failed = await wait_for(runs, bad_run.id, within=20)
        finished = [await wait_for(runs, run.id, within=20) for run in good_runs]

    assert failed.status == runs_pb2.Run.FAILED
    assert error in failed.error_message
    assert [run.status for run in finished] == [runs_pb2.Run.COMPLETED] * 5


async def test_a_refused_change_does_not_hold_back_its_batch(
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    pool: asyncpg.Pool,
) -> None:
    # Two runs (no worker), leased by one journal's owner; their changes share a batch.
    await register_agent(agents, "nobody", "http://127.0.0.1:9/", protocol="http")
    workflow = await create_workflow(workflows, chain(("only", "nobody", {})))
    first, second = [await execute(runs, workflow.id, {}) for _ in range(2)]
    await pool.execute(
        "UPDATE runs SET lease_owner = 'journal-test', lease_expires_at = now() + interval '1 min'"
    )
    journal = Journal(pool, "journal-test")
    journal.start()
    try:
        # Without the isolation the batch would be retried forever: bounded here.
        async with asyncio.timeout(15):
            good, refused = await asyncio.gather(
                journal.write(RunChange(first.id, "PENDING", "RUNNING", 0, output={"ok": 1})),
                journal.write(RunChange(second.id, "PENDING", "RUNNING", 0, output={"t": "\x00"})),
                return_exceptions=True,
            )
    finally:
        await journal.stop()

    assert good is True
    assert isinstance(refused, ChangeRefused)
    statuses = {row["id"]: row["status"] for row in await pool.fetch("SELECT id, status FROM runs")}
    assert statuses == {first.id: "RUNNING", second.id: "PENDING"}
