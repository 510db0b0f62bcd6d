"""The scripts in examples/ run against a real server, worker and echo agent, and pass
``mypy --strict``, so they cannot rot."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.app import GrpcApp
from baton_server.executor.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BATON = Path(sys.executable).with_name("baton")
EXECUTED = {"register_agents.py", "etl_workflow.py", "run_and_watch.py", "sync_quickstart.py"}


@dataclass(frozen=True)
class Finished:
    code: int
    out: str
    err: str


async def execute(*command: str, server: str | None = None) -> Finished:
    env = {**os.environ, "NO_COLOR": "1"}
    if server is not None:
        env["BATON_SERVER"] = server
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def example(name: str, *args: str, server: str) -> Finished:
    finished = await execute(sys.executable, str(EXAMPLES / name), *args, server=server)
    assert finished.code == 0, f"{name} failed:\n{finished.out}\n{finished.err}"
    return finished


@pytest.fixture
def server(grpc_app: GrpcApp, engine: AsyncEngine, worker: Worker) -> str:
    return f"127.0.0.1:{grpc_app.port}"


def test_every_example_script_is_executed_here() -> None:
    assert {path.name for path in EXAMPLES.glob("*.py")} == EXECUTED


async def test_examples_register_define_run_and_watch(server: str, echo_agent_url: str) -> None:
    registered = await example("register_agents.py", "--agent-url", echo_agent_url, server=server)
    assert [line.split() for line in registered.out.splitlines()] == [
        ["DataExtractorAgent", "active", "healthy"],
        ["DataTransformerAgent", "active", "healthy"],
        ["DataLoaderAgent", "active", "healthy"],
    ]
    again = await example("register_agents.py", "--agent-url", echo_agent_url, server=server)
    assert again.out == registered.out, "registering again updates instead of failing"

    defined = await example("etl_workflow.py", "--server", server, server="127.0.0.1:1")
    assert defined.out.startswith("data-processing-pipeline version 1 (")
    unchanged = await example("etl_workflow.py", server=server)
    assert unchanged.out.splitlines()[0] == defined.out.splitlines()[0]

    watched = await example("run_and_watch.py", server=server)
    lines = watched.out.splitlines()
    assert lines[0].startswith("started run-")
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["extract", "completed"],
        ["transform", "completed"],
        ["load", "completed"],
    ]
    assert lines[4].startswith("COMPLETED in ")
    assert '"destination": "s3://bucket/output/"' in watched.out

    quick = await example("sync_quickstart.py", server=server)
    assert "\nStatus: COMPLETED\n" in quick.out
    assert "'destination': 's3://bucket/sync/'" in quick.out
    past = [line for line in quick.out.splitlines() if line.startswith("run-")]
    assert len(past) == 2, "both completed runs are listed"


async def test_cli_with_the_example_files(server: str, echo_agent_url: str) -> None:
    await example("register_agents.py", "--agent-url", echo_agent_url, server=server)
    created = await execute(
        str(BATON), "workflows", "create", "-f", "examples/etl_workflow.yaml", server=server
    )
    assert created.code == 0, created.err
    ran = await execute(
        str(BATON),
        "run",
        "data-processing-pipeline",
        "--input-file",
        "examples/etl_input.yaml",
        server=server,
    )
    assert ran.code == 0, ran.err
    assert '"destination": "s3://bucket/output/"' in ran.out
    assert '"note": "Hello, Ada!"' in ran.out


async def test_examples_pass_mypy_strict() -> None:
    checked = await execute(sys.executable, "-m", "mypy", "--strict", "examples")
    assert checked.code == 0, checked.out + checked.err
    assert checked.out.startswith("Success: no issues found in 4 source files")
