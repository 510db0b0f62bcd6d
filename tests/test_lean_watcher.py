"""The event benchmark's hand-written clients (bench/lean_watcher.py) against the real
server and its Envoy: they must see exactly what Baton streams, and report failures."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from baton.v1 import runs_pb2, runs_pb2_grpc
from baton.v1 import workflows_pb2_grpc as wf_grpc
from baton_server.app import GrpcApp
from baton_server.executor.worker import Worker
from bench import lean_watcher
from tests.runs_support import execute
from tests.test_events import three_step_workflow

Event = runs_pb2.RunEvent
PATH = "/baton.v1.RunService/WatchRun"


def _request(run_id: str) -> bytes:
    return runs_pb2.WatchRunRequest(run_id=run_id).SerializeToString()


async def test_many_streams_on_one_connection_see_what_grpcio_sees(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    grpc_app: GrpcApp,
    worker: Worker,
    echo_agent_url: str,
) -> None:
    workflow_id = await three_step_workflow(agents, workflows, echo_agent_url, name="lean")
    first = await execute(runs, workflow_id, {})
    second = await execute(runs, workflow_id, {})
    watched = [first.id, second.id, first.id]
    received: dict[int, list[Event]] = defaultdict(list)

    def on_message(index: int, raw: bytes, at: float) -> None:
        received[index].append(Event.FromString(raw))

    failures = await lean_watcher.run_streams(
        f"127.0.0.1:{grpc_app.port}", PATH, [_request(r) for r in watched], on_message
    )

    assert failures == []
    for index, run_id in enumerate(watched):
        events = received[index]
        assert events[0].type == Event.state_sync
        assert events[-1].terminal
        stored = [
            e
            async for e in runs.WatchRun(
                runs_pb2.WatchRunRequest(run_id=run_id, after_sequence=events[0].sequence)
            )
        ]
        assert events[1:] == stored


async def test_a_stream_the_server_rejects_is_reported(grpc_app: GrpcApp) -> None:
    seen: list[bytes] = []
    failures = await lean_watcher.run_streams(
        f"127.0.0.1:{grpc_app.port}",
        PATH,
        [_request("run-unknown")],
        lambda index, raw, at: seen.append(raw),
    )
    assert seen == []
    assert failures == ["stream 1: stream ended without a message (a gRPC error status)"]


async def test_the_sse_reader_sees_what_the_rest_face_streams(
    agents: Any,
    workflows: wf_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    rest_url: str,
    worker: Worker,
    echo_agent_url: str,
) -> None:
    workflow_id = await three_step_workflow(agents, workflows, echo_agent_url, name="lean-sse")
    run = await execute(runs, workflow_id, {})
    events: list[dict[str, Any]] = []

    failure = await lean_watcher.run_sse_stream(
        rest_url, f"/api/v1/runs/{run.id}/events", lambda data, at: events.append(json.loads(data))
    )

    assert failure is None
    assert events[0]["type"] == "state_sync"
    assert events[-1]["terminal"] is True
    stored = [
        e
        async for e in runs.WatchRun(
            runs_pb2.WatchRunRequest(run_id=run.id, after_sequence=int(events[0]["sequence"]))
        )
    ]
    assert [int(e["sequence"]) for e in events[1:]] == [e.sequence for e in stored]


async def test_an_sse_request_the_rest_face_rejects_is_reported(rest_url: str) -> None:
    failure = await lean_watcher.run_sse_stream(
        rest_url, "/api/v1/runs/run-unknown/events", lambda data, at: None
    )
    assert failure == "answered 'http/1.1 404 not found'"
