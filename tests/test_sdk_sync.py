"""The blocking facade: same API without ``await``, driven from a plain thread.

The server runs on the test's event loop, so each blocking call is made from a worker
thread (``asyncio.to_thread``), exactly as a script or notebook would make it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import baton_sdk
from baton_sdk import (
    AgentStatus,
    NotFoundError,
    RunEvent,
    RunEventType,
    RunStatus,
    Step,
    SyncBatonClient,
    SyncRun,
    WaitTimeoutError,
)
from baton_server.app import GrpcApp
from baton_server.executor.worker import Worker

T = TypeVar("T")


async def blocking(function: Callable[[], T]) -> T:
    return await asyncio.to_thread(function)


@pytest.fixture
def target(grpc_app: GrpcApp, engine: AsyncEngine) -> str:
    return f"127.0.0.1:{grpc_app.port}"


async def test_sync_client_covers_the_api(target: str, worker: Worker, echo_agent_url: str) -> None:
    def script() -> None:
        with baton_sdk.connect_sync(target) as client:
            assert isinstance(client, SyncBatonClient)
            agent = client.agents.create(name="echo", url=echo_agent_url)
            assert client.agents.get(agent.id) == agent
            assert client.agents.find("echo") == agent
            assert client.agents.check_health(agent).healthy
            for index in range(3):
                client.agents.create(name=f"extra-{index}", url=echo_agent_url)
            assert len(client.agents.list(page_size=2).to_list()) == 4
            assert [len(p.items) for p in client.agents.list(page_size=3).pages()] == [3, 1]
            assert [a.name for a in client.agents.list(limit=1)] == ["extra-2"]
            assert client.agents.update(agent, description="blocking").description == "blocking"
            extra = client.agents.find("extra-0")
            assert extra is not None
            client.agents.delete(extra)
            assert client.agents.get(extra).status is AgentStatus.DELETED

            workflow = client.workflows.create(
                name="sync",
                start_step="a",
                steps={
                    "a": Step(agent_name="echo", next_step="b", input_mapping={"n": 1}),
                    "b": Step(
                        agent_name="echo", input_mapping={"_mode": "sleep", "_sleep_ms": 800}
                    ),
                },
            )
            assert client.workflows.get(workflow) == workflow
            assert client.workflows.find("sync") == workflow
            assert [w.id for w in client.workflows.list()] == [workflow.id]
            client.workflows.update(workflow, description="blocking")
            assert [v.version for v in client.workflows.versions(workflow)] == [1]
            client.workflows.deactivate(workflow)
            client.workflows.activate(workflow)

            run = client.runs.execute(workflow, input_data={"x": 1}, wait=True, timeout=30)
            assert isinstance(run, SyncRun)
            assert run.status is RunStatus.COMPLETED
            assert [s.step_id for s in client.runs.steps(run)] == ["a", "b"]
            assert client.runs.get(run.id) == run
            assert [r.id for r in client.runs.list()] == [run.id]
            lines = client.runs.logs(run).to_list()
            assert lines[-1].message.startswith("Run completed")
            assert list(client.runs.follow_logs(run)) == lines

            started = client.runs.execute(workflow)
            with pytest.raises(WaitTimeoutError):
                started.wait(timeout=0.2)
            events = list(started.watch())
            assert events[0].type is RunEventType.STATE_SYNC
            assert events[-1].terminal
            assert started.wait(timeout=30).status is RunStatus.COMPLETED
            assert client.runs.wait(started.id).refresh().status is RunStatus.COMPLETED

            held = client.runs.execute(workflow)
            assert client.runs.pause(held, reason="hold").status is RunStatus.PAUSED
            client.runs.resume(held)
            assert client.runs.wait(held, timeout=30).status is RunStatus.COMPLETED
            assert client.runs.step(held, "a").output_data["n"] == 1
            client.runs.delete(held)
            with pytest.raises(NotFoundError):
                client.runs.get(held.id)

            third = client.runs.execute(workflow)
            cancelled = client.runs.cancel(third, reason="enough")
            assert cancelled.status is RunStatus.CANCELLED
            assert client.runs.retry(cancelled, wait=True, timeout=30).status is (
                RunStatus.COMPLETED
            )

            with pytest.raises(NotFoundError):
                client.runs.get("run-nope")
            client.workflows.delete(workflow)

    await blocking(script)


async def test_breaking_out_of_a_stream_closes_it(
    target: str, worker: Worker, echo_agent_url: str
) -> None:
    def script() -> None:
        with baton_sdk.connect_sync(target) as client:
            client.agents.create(name="echo", url=echo_agent_url)
            workflow = client.workflows.create(
                name="slow",
                start_step="a",
                steps={
                    "a": Step(agent_name="echo", input_mapping={"_mode": "sleep", "_sleep_ms": 500})
                },
            )
            run = client.runs.execute(workflow)
            events = client.runs.watch(run)
            first = next(events)
            assert first.type is RunEventType.STATE_SYNC
            events.close()  # cancels the stream; the client stays usable
            assert client.runs.wait(run, timeout=30).status is RunStatus.COMPLETED

    await blocking(script)


async def test_sync_client_closes_its_thread(target: str) -> None:
    def script() -> None:
        before = threading.active_count()
        client = baton_sdk.connect_sync(target)
        assert threading.active_count() == before + 1
        assert client.agents.list().to_list() == []
        client.close()
        client.close()  # closing twice is harmless
        assert threading.active_count() == before
        with pytest.raises(RuntimeError, match="closed"):
            client.agents.list().to_list()

    await blocking(script)


async def test_sync_connect_failure_leaves_no_thread_behind() -> None:
    def script() -> None:
        before = threading.active_count()
        with pytest.raises(baton_sdk.UnavailableError):
            baton_sdk.connect_sync("127.0.0.1:1", connect_timeout=0.2)
        assert threading.active_count() == before

    await blocking(script)


async def test_sync_watch_all_streams_status_changes(
    target: str, worker: Worker, echo_agent_url: str
) -> None:
    with baton_sdk.connect_sync(target) as client:
        await blocking(lambda: client.agents.create(name="echo", url=echo_agent_url))
        workflow = await blocking(
            lambda: client.workflows.create(
                name="feed", start_step="a", steps={"a": Step(agent_name="echo")}
            )
        )

        def first_completion() -> RunEvent:
            events = client.runs.watch_all(workflow=workflow, statuses=[RunStatus.COMPLETED])
            try:
                return next(events)
            finally:
                events.close()

        listening = asyncio.ensure_future(blocking(first_completion))
        # Runs are started until the subscriber (whose subscription time is unknown
        # here) has seen one complete.
        started: set[str] = set()
        while not listening.done():
            run = await blocking(lambda: client.runs.execute(workflow))
            started.add(run.id)
            await asyncio.wait([listening], timeout=0.5)
        event = await listening
        assert event.run_id in started
        assert event.status is RunStatus.COMPLETED
        assert event.run is not None
