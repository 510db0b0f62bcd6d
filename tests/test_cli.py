"""The ``baton`` command's client side, run as a real process against the test server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.app import GrpcApp
from baton_server.executor.worker import Worker
from tests.agents.process import AgentProcess, unused_loopback_port

BATON = Path(sys.executable).with_name("baton")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Baton = Callable[..., Awaitable[Result]]


@pytest.fixture
def baton(grpc_app: GrpcApp, engine: AsyncEngine, tmp_path: Path) -> Baton:
    """Run ``baton <args>`` against the test server; the event loop keeps serving."""

    async def run(*args: str, stdin: str | None = None, server: str | None = None) -> Result:
        env = {
            **os.environ,
            "BATON_SERVER": server or f"127.0.0.1:{grpc_app.port}",
            "NO_COLOR": "1",
        }
        process = await asyncio.create_subprocess_exec(
            str(BATON),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        )
        out, err = await asyncio.wait_for(
            process.communicate(stdin.encode() if stdin is not None else None), 60
        )
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    return run


@pytest.fixture(scope="module")
def failing_agent_url() -> Any:
    with AgentProcess() as agent:
        yield agent.start(mode="fail")


def write(path: Path, data: Any) -> str:
    if path.suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        path.write_text(yaml.safe_dump(data))
    return str(path)


ETL: dict[str, Any] = {
    "name": "data-processing-pipeline",
    "description": "Extract, transform, load",
    "start_step": "extract",
    "steps": {
        "extract": {
            "agent_name": "DataExtractorAgent",
            "next_step": "transform",
            "input_mapping": {
                "source_url": "${workflow.input.data_source}",
                "limit": "${workflow.input.options.limit}",
            },
        },
        "transform": {
            "agent_name": "DataTransformerAgent",
            "next_step": "load",
            "input_mapping": {"raw_data": "${extract.output.data}"},
        },
        "load": {
            "agent_name": "DataLoaderAgent",
            "next_step": None,
            "input_mapping": {
                "transformed_data": "${transform.output.data}",
                "destination": "${workflow.input.destination}",
            },
        },
    },
}


async def register_etl(baton: Baton, tmp_path: Path, agent_url: str) -> None:
    agents = [
        {"name": name, "url": agent_url, "retry_config": {"max_retries": 0}}
        for name in ("DataExtractorAgent", "DataTransformerAgent", "DataLoaderAgent")
    ]
    created = await baton("agents", "create", "-f", write(tmp_path / "agents.yaml", agents))
    assert created.code == 0, created.err
    assert created.out.count("created agent") == 3
    workflow = await baton("workflows", "create", "-f", write(tmp_path / "etl.json", ETL))
    assert workflow.code == 0, workflow.err
    assert "created workflow data-processing-pipeline version 1" in workflow.out


async def test_agents_commands(baton: Baton, tmp_path: Path, echo_agent_url: str) -> None:
    agent = {"name": "echo", "url": echo_agent_url, "timeout_ms": 5000}
    created = await baton("agents", "create", "-f", write(tmp_path / "a.json", agent), "--json")
    assert created.code == 0, created.err
    body = created.json()
    assert (body["name"], body["status"], body["timeout_ms"]) == ("echo", "active", 5000)

    listed = await baton("agents", "list")
    assert listed.code == 0
    header, row = listed.out.splitlines()
    assert header.split() == ["NAME", "STATUS", "PROTOCOL", "URL", "ID", "UPDATED"]
    assert row.split()[:5] == ["echo", "active", "a2a", echo_agent_url, body["id"]]
    assert [a["id"] for a in (await baton("agents", "list", "--json")).json()] == [body["id"]]

    by_name = await baton("agents", "get", "echo")
    assert by_name.code == 0
    assert f"id           {body['id']}" in by_name.out
    by_id = await baton("agents", "get", body["id"], "--json")
    assert by_id.json() == body

    healthy = await baton("agents", "health", "echo")
    assert (healthy.code, healthy.out.startswith("echo is healthy (HTTP 200")) == (0, True)

    change = write(tmp_path / "change.yaml", {"description": "Echoes", "status": "inactive"})
    updated = await baton("agents", "update", "echo", "-f", change, "--json")
    assert updated.code == 0, updated.err
    assert (updated.json()["description"], updated.json()["status"]) == ("Echoes", "inactive")
    # What `get --json` prints can be edited and sent back as is.
    round_trip = write(tmp_path / "round.json", {**updated.json(), "timeout_ms": 7000})
    assert (await baton("agents", "update", body["id"], "-f", round_trip)).code == 0

    deleted = await baton("agents", "delete", "echo")
    assert (deleted.code, deleted.out.strip()) == (0, f"deleted agent echo ({body['id']})")
    gone = await baton("agents", "list", "--status", "deleted", "--json")
    assert [(a["id"], a["status"]) for a in gone.json()] == [(body["id"], "deleted")]


async def test_agent_errors_and_exit_codes(baton: Baton, tmp_path: Path) -> None:
    missing = await baton("agents", "get", "nobody")
    assert (missing.code, missing.err.strip()) == (3, "Error: no agent named 'nobody'")
    unknown_id = await baton("agents", "get", "00000000-0000-4000-8000-000000000000")
    assert unknown_id.code == 3
    assert unknown_id.err.startswith("Error: NOT_FOUND (AGENT_NOT_FOUND): ")

    bad = write(tmp_path / "bad.yaml", {"name": "bad", "url": "ftp://x", "timeout_ms": 5})
    invalid = await baton("agents", "create", "-f", bad)
    assert invalid.code == 3
    assert invalid.err.startswith("Error: INVALID_ARGUMENT (INVALID_FIELD): ")
    assert "\n  timeout_ms: " in invalid.err

    typo = write(tmp_path / "typo.yaml", {"name": "x", "url": "http://x", "timout_ms": 5})
    unknown_field = await baton("agents", "create", "-f", typo)
    assert unknown_field.code == 2
    assert "unknown agent field(s): timout_ms" in unknown_field.err
    unreadable = await baton("agents", "create", "-f", str(tmp_path / "nope.yaml"))
    assert unreadable.code == 2
    assert "cannot read" in unreadable.err

    stdin = await baton("agents", "create", "-f", "-", stdin='{"name": "piped", "url": "http://p"}')
    assert stdin.code == 0, stdin.err

    dead = {"name": "dead", "url": f"http://127.0.0.1:{unused_loopback_port()}", "timeout_ms": 1000}
    assert (await baton("agents", "create", "-f", write(tmp_path / "dead.json", dead))).code == 0
    unhealthy = await baton("agents", "health", "dead")
    assert unhealthy.code == 1
    assert unhealthy.out.startswith("dead is unhealthy: ")

    down = await baton("agents", "list", server=f"127.0.0.1:{unused_loopback_port()}")
    assert down.code == 3
    assert down.err.startswith("Error: cannot reach the Baton server at 127.0.0.1:")


async def test_workflow_commands(baton: Baton, tmp_path: Path, echo_agent_url: str) -> None:
    await register_etl(baton, tmp_path, echo_agent_url)
    listed = await baton("workflows", "list")
    assert listed.out.splitlines()[1].split()[:4] == [
        "data-processing-pipeline",
        "1",
        "active",
        "3",
    ]
    shown = await baton("workflows", "get", "data-processing-pipeline")
    assert shown.code == 0
    assert "\nversion      1 (" in shown.out
    steps = shown.out.split("\n\n")[1].splitlines()
    assert steps[0].split()[:3] == ["STEP", "AGENT", "NEXT"]
    assert [line.split()[:3] for line in steps[1:]] == [
        ["extract", "(start)", "DataExtractorAgent"],
        ["transform", "DataTransformerAgent", "load"],
        ["load", "DataLoaderAgent", "-"],
    ]

    fetched = (await baton("workflows", "get", "data-processing-pipeline", "--json")).json()
    fetched["workflow_data"]["steps"]["load"]["input_mapping"]["note"] = "v2"
    edited = write(tmp_path / "edited.json", fetched)
    updated = await baton("workflows", "update", "data-processing-pipeline", "-f", edited)
    assert updated.code == 0, updated.err
    assert "now version 2" in updated.out
    versions = await baton("workflows", "versions", "data-processing-pipeline", "--json")
    assert [(v["version"], v["status"]) for v in versions.json()] == [
        (2, "active"),
        (1, "inactive"),
    ]

    off = await baton("workflows", "deactivate", "data-processing-pipeline")
    assert off.out.strip() == "workflow data-processing-pipeline is inactive"
    refused = await baton("run", "data-processing-pipeline")
    assert refused.code == 3
    assert "(WORKFLOW_NOT_ACTIVE)" in refused.err
    on = await baton("workflows", "activate", "data-processing-pipeline", "--json")
    assert on.json()["status"] == "active"

    cycle = json.loads(json.dumps(ETL))
    cycle["name"] = "cyclic"
    cycle["steps"]["load"]["next_step"] = "extract"
    rejected = await baton("workflows", "create", "-f", write(tmp_path / "cycle.yaml", cycle))
    assert rejected.code == 3
    assert rejected.err.startswith("Error: INVALID_ARGUMENT (WORKFLOW_CYCLE): ")

    assert (await baton("workflows", "delete", "data-processing-pipeline")).code == 0
    assert (await baton("workflows", "list", "--json")).json() == []


async def test_run_shows_progress_and_output(
    baton: Baton, tmp_path: Path, echo_agent_url: str, worker: Worker
) -> None:
    await register_etl(baton, tmp_path, echo_agent_url)
    input_file = write(tmp_path / "input.json", {"data_source": "s3://in", "options": {"limit": 5}})
    done = await baton(
        "run",
        "data-processing-pipeline",
        "--input-file",
        input_file,
        "--input",
        "destination=s3://out",
        "-i",
        "options.limit=100",
    )
    assert done.code == 0, done.err
    lines = done.out.splitlines()
    assert lines[0].startswith("run run-")
    assert lines[0].endswith("  workflow 'data-processing-pipeline' v1, 3 steps")
    step_lines = [line.split() for line in lines[1:4]]
    assert [(words[0], words[1]) for words in step_lines] == [
        ("extract", "COMPLETED"),
        ("transform", "COMPLETED"),
        ("load", "COMPLETED"),
    ]
    assert all(words[2].endswith("s") for words in step_lines), "each step has a duration"
    assert lines[4].split()[2:4] == ["COMPLETED", "in"]
    output = json.loads("\n".join(lines[5:]))
    assert output["destination"] == "s3://out"
    run_id = lines[0].split()[1]

    shown = await baton("runs", "get", run_id, "--json")
    run = shown.json()
    assert (run["status"], run["input_data"]["options"]["limit"]) == ("COMPLETED", 100)
    table = await baton("runs", "list")
    assert table.out.splitlines()[1].split()[:3] == [
        run_id,
        "data-processing-pipeline",
        "v1",
    ]
    steps = await baton("runs", "steps", run_id)
    assert [line.split()[0] for line in steps.out.splitlines()[1:]] == [
        "extract",
        "transform",
        "load",
    ]
    logs = await baton("runs", "logs", run_id)
    assert "Run created for workflow 'data-processing-pipeline'" in logs.out.splitlines()[0]
    followed = await baton("runs", "logs", run_id, "--follow")
    assert followed.out == logs.out
    as_json = await baton("runs", "logs", run_id, "--json")
    assert [json.loads(line)["message"] for line in as_json.out.splitlines()][-1].startswith(
        "Run completed"
    )
    with_logs = await baton(
        "run",
        "data-processing-pipeline",
        "--input-file",
        input_file,
        "-i",
        "destination=d",
        "--logs",
    )
    log_line = re.compile(r"    \d\d:\d\d:\d\d\.\d{3} ")
    printed_logs = [line.strip() for line in with_logs.out.splitlines() if log_line.match(line)]
    logged_id = with_logs.out.split()[1]
    stored_lines = (await baton("runs", "logs", logged_id)).out.splitlines()
    assert printed_logs == stored_lines, "--logs shows the whole log once, in order"
    # Watching a finished run replays its steps from the snapshot, then its output.
    watched = await baton("runs", "watch", run_id)
    assert watched.code == 0
    assert watched.out.startswith(f"run {run_id}  COMPLETED  workflow ")
    assert watched.out.splitlines()[4].startswith(f"run {run_id}  COMPLETED in ")
    assert [line.split()[:2] for line in watched.out.splitlines()[1:4]] == [
        ["extract", "COMPLETED"],
        ["transform", "COMPLETED"],
        ["load", "COMPLETED"],
    ]
    assert json.loads("\n".join(watched.out.splitlines()[5:])) == output
    scripted = await baton(
        "run",
        "data-processing-pipeline",
        "--json",
        "-i",
        'data_source="s3://in"',
        "-i",
        "options.limit=1",
        "-i",
        "destination=s3://out",
    )
    assert (scripted.code, scripted.json()["status"]) == (0, "COMPLETED")


async def test_failed_run_exits_non_zero_with_the_error(
    baton: Baton, tmp_path: Path, failing_agent_url: str, worker: Worker
) -> None:
    await register_etl(baton, tmp_path, failing_agent_url)
    failed = await baton(
        "run", "data-processing-pipeline", "-i", "data_source=x", "-i", "options.limit=1"
    )
    assert failed.code == 1
    lines = failed.out.splitlines()
    assert lines[1].split()[:2] == ["extract", "FAILED"]
    assert "intentional failure" in lines[1]
    assert lines[-1].split()[2] == "FAILED"
    assert "Step 'extract' failed" in lines[-1]
    run_id = lines[0].split()[1]
    assert (await baton("runs", "wait", run_id)).code == 1
    listed = await baton("runs", "list", "--status", "FAILED", "--json")
    assert [r["id"] for r in listed.json()] == [run_id]


async def test_detach_cancel_retry_and_timeout(
    baton: Baton, tmp_path: Path, echo_agent_url: str, worker: Worker
) -> None:
    slow = {
        "name": "slow",
        "start_step": "nap",
        "steps": {
            "nap": {"agent_name": "echo", "input_mapping": {"_mode": "sleep", "_sleep_ms": 3000}}
        },
    }
    assert (
        await baton(
            "agents", "create", "-f", "-", stdin=json.dumps({"name": "echo", "url": echo_agent_url})
        )
    ).code == 0
    assert (await baton("workflows", "create", "-f", write(tmp_path / "slow.json", slow))).code == 0

    began = time.monotonic()
    impatient = await baton("run", "slow", "--timeout", "0.5")
    assert impatient.code == 124
    assert "follow it with: baton runs watch run-" in impatient.err
    assert time.monotonic() - began < 3

    detached = await baton("run", "slow", "--detach")
    run_id = detached.out.strip()
    assert (detached.code, run_id.startswith("run-")) == (0, True)
    cancelled = await baton("runs", "cancel", run_id, "--reason", "enough")
    assert cancelled.out.strip() == f"run {run_id} is CANCELLED"
    assert (await baton("runs", "get", run_id, "--json")).json()["error_message"] == (
        "Cancelled: enough"
    )
    again = await baton("runs", "cancel", run_id)
    assert again.code == 3
    assert "(RUN_NOT_CANCELLABLE)" in again.err
    retried = await baton("runs", "retry", run_id, "--follow")
    assert retried.code == 0, retried.err
    assert f"run {run_id}  COMPLETED in " in retried.out

    step = await baton("runs", "step", run_id, "nap")
    assert step.code == 0, step.err
    assert "step nap (echo): COMPLETED" in step.out
    assert '"_sleep_ms": 3000' in step.out
    deleted = await baton("runs", "delete", run_id)
    assert deleted.out.strip() == f"run {run_id} deleted"
    assert (await baton("runs", "get", run_id)).code != 0


async def test_pause_and_resume_commands(
    baton: Baton, tmp_path: Path, echo_agent_url: str, worker: Worker
) -> None:
    nap = {"agent_name": "echo", "input_mapping": {"_mode": "sleep", "_sleep_ms": 600}}
    body = {
        "name": "naps",
        "start_step": "one",
        "steps": {"one": {**nap, "next_step": "two"}, "two": nap},
    }
    assert (
        await baton(
            "agents", "create", "-f", "-", stdin=json.dumps({"name": "echo", "url": echo_agent_url})
        )
    ).code == 0
    assert (await baton("workflows", "create", "-f", write(tmp_path / "naps.json", body))).code == 0
    run_id = (await baton("run", "naps", "--detach")).out.strip()
    paused = await baton("runs", "pause", run_id, "--reason", "look first")
    assert paused.out.strip() == f"run {run_id} is PAUSED", paused.err
    listed = await baton("runs", "list", "--status", "PAUSED", "--json")
    assert [r["id"] for r in listed.json()] == [run_id]
    again = await baton("runs", "pause", run_id)
    assert again.code == 3
    assert "(RUN_NOT_PAUSABLE)" in again.err
    signalled = await baton("runs", "signal", run_id, "nudge", "--payload", '{"a": 1}')
    assert signalled.out.strip() == f"signal nudge sent to {run_id}", signalled.err
    again = await baton("runs", "signal", run_id, "nudge")
    assert again.out.strip() == f"signal nudge was already sent to {run_id}"
    resumed = await baton("runs", "resume", run_id)
    assert resumed.code == 0, resumed.err
    assert resumed.out.startswith(f"run {run_id} is ")
    assert (await baton("runs", "wait", run_id)).code == 0


async def test_server_commands_still_work(baton: Baton) -> None:
    helped = await baton("--help")
    for command in ("serve", "worker", "migrate", "agents", "workflows", "runs", "run"):
        assert f"  {command} " in helped.out
    serve = await baton("serve", "--help")
    assert "--grpc-port" in serve.out


async def test_ctrl_c_stops_following_but_not_the_run(
    grpc_app: GrpcApp, baton: Baton, tmp_path: Path, echo_agent_url: str, worker: Worker
) -> None:
    nap = {"agent_name": "echo", "input_mapping": {"_mode": "sleep", "_sleep_ms": 1500}}
    slow = {"name": "slow", "start_step": "nap", "steps": {"nap": nap}}
    agent = json.dumps({"name": "echo", "url": echo_agent_url})
    assert (await baton("agents", "create", "-f", "-", stdin=agent)).code == 0
    assert (await baton("workflows", "create", "-f", write(tmp_path / "slow.json", slow))).code == 0
    process = await asyncio.create_subprocess_exec(
        str(BATON),
        "run",
        "slow",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BATON_SERVER": f"127.0.0.1:{grpc_app.port}"},
    )
    assert process.stdout is not None
    header = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
    run_id = header.split()[1]
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130, err.decode()
    assert f"run {run_id} goes on - follow it with: baton runs watch {run_id}" in err.decode()
    finished = await baton("runs", "wait", run_id, "--json")
    assert (finished.code, finished.json()["status"]) == (0, "COMPLETED")


async def test_webhooks_commands(baton: Baton, worker: Worker) -> None:
    # Deliveries to a closed port fail; the listing shows the attempt.
    url = f"http://127.0.0.1:{unused_loopback_port()}/hook"
    created = await baton("webhooks", "create", "--url", url, "--event", "workflow.created")
    assert created.code == 0, created.err
    webhook_id = created.out.split()[1]
    secret = created.out.splitlines()[1]
    assert secret.startswith("whsec_")
    listed = await baton("webhooks", "list", "--json")
    assert [(w["id"], w["events"]) for w in listed.json()] == [(webhook_id, ["workflow.created"])]
    pinged = await baton("webhooks", "test", webhook_id, "--json")
    assert pinged.code == 0, pinged.err
    assert pinged.json()["event"] == "ping"
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        found = (await baton("webhooks", "deliveries", webhook_id, "--json")).json()
        if found and found[0]["attempts"] >= 1:
            break
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.1)
    assert "Connect" in found[0]["last_error"] or "refused" in found[0]["last_error"]
    table = await baton("webhooks", "deliveries", webhook_id)
    assert table.out.split()[:6] == ["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "CREATED"]
    again = await baton("webhooks", "redeliver", webhook_id, found[0]["id"])
    assert (again.code, again.out.strip()) == (0, f"Delivery {found[0]['id']} (ping) queued again")
    unknown = await baton("webhooks", "create", "--url", url, "--event", "nope")
    assert unknown.code != 0
    assert "nope" in unknown.err
    assert (await baton("webhooks", "delete", webhook_id)).code == 0
    assert (await baton("webhooks", "list", "--json")).json() == []


async def test_schedules_commands(
    baton: Baton, tmp_path: Path, echo_agent_url: str, worker: Worker
) -> None:
    await register_etl(baton, tmp_path, echo_agent_url)
    etl = "data-processing-pipeline"
    created = await baton(
        "schedules", "create", etl, "--name", "hourly", "--cron", "0 * * * *",
        "--timezone", "Europe/Zurich", "--input", "source=cli", "--json",
    )  # fmt: skip
    assert created.code == 0, created.err
    schedule = created.json()
    assert (schedule["cron_expression"], schedule["timezone"]) == ("0 * * * *", "Europe/Zurich")
    assert schedule["parameters"] == {"source": "cli"}
    shown = await baton("schedules", "get", schedule["id"])
    assert "cron 0 * * * * (Europe/Zurich)" in shown.out
    assert "scheduled" in shown.out

    listed = await baton("schedules", "list")
    assert listed.out.split()[:6] == ["ID", "NAME", "WORKFLOW", "WHEN", "STATE", "NEXT"]
    disabled = await baton("schedules", "disable", schedule["id"], "--json")
    assert disabled.json()["state"] == "disabled"
    run_id = (await baton("schedules", "trigger", schedule["id"])).out.strip()
    finished = await baton("runs", "wait", run_id, "--json")
    assert finished.json()["triggered_by"] == f"schedule:{schedule['id']}"
    fires = await baton("schedules", "fires", schedule["id"], "--json")
    assert [(f["outcome"], f["run_id"]) for f in fires.json()] == [("triggered", run_id)]

    every = await baton("schedules", "create", etl, "--name", "often", "--every", "90s", "--json")
    assert (every.json()["interval_value"], every.json()["interval_unit"]) == (90, "seconds")
    bad = await baton("schedules", "create", etl, "--name", "x", "--cron", "61 * * * *")
    assert bad.code != 0
    assert "cron_expression" in bad.err
    both = await baton("schedules", "create", etl, "--name", "x", "--every", "5m", "--at", "x")
    assert both.code == 2
    assert "exactly one of --cron, --every or --at" in both.err
    assert (await baton("schedules", "delete", schedule["id"])).code == 0
    assert len((await baton("schedules", "list", "--json")).json()) == 1


async def test_test_step_command(baton: Baton, tmp_path: Path, echo_agent_url: str) -> None:
    body = {
        "name": "two",
        "start_step": "a",
        "max_concurrent_runs": 4,
        "steps": {
            "a": {"agent_name": "echo", "next_step": "b", "input_mapping": {"x": 1}},
            "b": {"agent_name": "echo", "input_mapping": {"y": "${a.output.x}"}},
        },
    }
    assert (
        await baton(
            "agents", "create", "-f", "-", stdin=json.dumps({"name": "echo", "url": echo_agent_url})
        )
    ).code == 0
    assert (await baton("workflows", "create", "-f", write(tmp_path / "two.json", body))).code == 0
    assert (await baton("workflows", "get", "two", "--json")).json()["max_concurrent_runs"] == 4
    outputs = write(tmp_path / "outputs.json", {"a": {"x": 41}})
    tested = await baton("workflows", "test-step", "two", "b", "--outputs-file", outputs)
    assert tested.code == 0, tested.err
    assert "step b (echo): completed in " in tested.out
    assert 'input: {"y": 41}' in tested.out
    missing = await baton("workflows", "test-step", "two", "b")
    assert missing.code != 0
    assert "(STEP_INPUT_UNRESOLVED)" in missing.err
