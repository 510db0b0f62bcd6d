"""Helpers for run tests: registering agents and workflows, waiting for runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from baton.v1 import (
    agents_pb2,
    agents_pb2_grpc,
    runs_pb2,
    runs_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from tests.access_support import TEST_SECRET_KEY

BATON = Path(sys.executable).with_name("baton")
TERMINAL = {runs_pb2.Run.COMPLETED, runs_pb2.Run.FAILED, runs_pb2.Run.CANCELLED}


Metadata = tuple[tuple[str, str], ...]


async def register_agent(
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
    name: str,
    url: str,
    *,
    metadata: Metadata = (),
    **fields: Any,
) -> agents_pb2.Agent:
    request = json_format.ParseDict(
        {"name": name, "url": url, **fields}, agents_pb2.CreateAgentRequest()
    )
    return await agents.CreateAgent(request, metadata=metadata)


async def create_workflow(
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub,
    body: dict[str, Any],
    *,
    metadata: Metadata = (),
) -> workflows_pb2.Workflow:
    return await workflows.CreateWorkflow(
        json_format.ParseDict(body, workflows_pb2.CreateWorkflowRequest()), metadata=metadata
    )


async def execute(
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    workflow_id: str,
    input_data: dict[str, Any],
    **fields: Any,
) -> runs_pb2.Run:
    return await runs.ExecuteWorkflow(
        json_format.ParseDict(
            {"workflow_id": workflow_id, "input_data": input_data, **fields},
            runs_pb2.ExecuteWorkflowRequest(),
        )
    )


async def wait_for(
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    run_id: str,
    *,
    statuses: set[Any] = TERMINAL,
    within: float = 30.0,
) -> runs_pb2.Run:
    """Poll until the run reaches one of ``statuses``."""
    deadline = time.monotonic() + within
    while True:
        run = await runs.GetRun(runs_pb2.GetRunRequest(run_id=run_id))
        if run.status in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {runs_pb2.Run.Status.Name(run.status)}")
        await asyncio.sleep(0.02)


async def wait_for_step(
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    run_id: str,
    step_id: str,
    status: int,
    *,
    within: float = 30.0,
) -> runs_pb2.RunStep:
    deadline = time.monotonic() + within
    while True:
        for step in (await runs.ListRunSteps(runs_pb2.ListRunStepsRequest(run_id=run_id))).steps:
            if step.step_id == step_id and step.status == status:
                return step
        if time.monotonic() > deadline:
            raise AssertionError(f"step {step_id} of {run_id} never reached {status}")
        await asyncio.sleep(0.02)


async def steps_of(
    runs: runs_pb2_grpc.RunServiceAsyncStub, run_id: str
) -> dict[str, runs_pb2.RunStep]:
    reply = await runs.ListRunSteps(runs_pb2.ListRunStepsRequest(run_id=run_id))
    return {s.step_id: s for s in reply.steps}


async def log_lines(runs: runs_pb2_grpc.RunServiceAsyncStub, run_id: str) -> list[str]:
    reply = await runs.GetRunLogs(runs_pb2.GetRunLogsRequest(run_id=run_id))
    return [line.message for line in reply.logs]


def as_json(message: Any) -> Any:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def chain(*steps: tuple[str, str, dict[str, Any]], name: str = "chain") -> dict[str, Any]:
    """A linear workflow of (step_id, agent_name, input_mapping) steps."""
    body: dict[str, Any] = {"name": name, "start_step": steps[0][0], "steps": {}}
    for index, (step_id, agent, mapping) in enumerate(steps):
        step: dict[str, Any] = {"agent_name": agent, "input_mapping": mapping}
        if index + 1 < len(steps):
            step["next_step"] = steps[index + 1][0]
        body["steps"][step_id] = step
    return body


def worker_process(database_url: str, redis_url: str) -> subprocess.Popen[bytes]:
    """``baton worker`` as an operator would start it, with short leases."""
    env = {
        **os.environ,
        "BATON_DATABASE_URL": database_url,
        "BATON_REDIS_URL": redis_url,
        "BATON_LEASE_TTL_S": "2",
        "BATON_RECONCILE_INTERVAL_S": "0.3",
        "BATON_ENQUEUE_GRACE_S": "1",
        "BATON_SECRET_KEY": TEST_SECRET_KEY,
    }
    return subprocess.Popen([str(BATON), "worker", "--log-level", "warning"], env=env)


def deliver_process(database_url: str) -> subprocess.Popen[bytes]:
    """``baton deliver`` as an operator would start it, delivering to loopback."""
    env = {
        **os.environ,
        "BATON_DATABASE_URL": database_url,
        "BATON_SECRET_KEY": TEST_SECRET_KEY,
        "BATON_WEBHOOK_ALLOW_PRIVATE": "true",
        "BATON_WEBHOOK_TIMEOUT_S": "2",
    }
    return subprocess.Popen([str(BATON), "deliver", "--log-level", "warning"], env=env)
