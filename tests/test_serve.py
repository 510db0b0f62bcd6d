"""``baton serve`` as a user runs it: a subprocess on the embedded default, driven with
grpcurl and stopped with signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

BATON = Path(sys.executable).with_name("baton")
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Server:
    """One ``baton serve`` subprocess."""

    def __init__(
        self,
        data_dir: Path,
        grpc_port: int,
        http_port: int | None = None,
        *,
        options: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.grpc_port = grpc_port
        self.http_port = http_port or free_port()
        self.process = subprocess.Popen(
            [
                str(BATON),
                "serve",
                "--data-dir",
                str(data_dir),
                "--grpc-port",
                str(grpc_port),
                "--http-port",
                str(self.http_port),
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("BATON_")} | (env or {}),
        )

    def wait_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.process.poll() is None, self.output()
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise AssertionError(f"not SERVING within {timeout}s:\n{self.output()}")

    def grpcurl(self, *args: str, data: dict[str, Any] | None = None) -> Any:
        command = [GRPCURL, "-plaintext"]
        if data is not None:
            command += ["-d", json.dumps(data)]
        command += [f"localhost:{self.grpc_port}", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            return result.stdout

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def output(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stdout is not None
        return self.process.stdout.read()


@pytest.fixture
def server(data_dir: Path) -> Iterator[Server]:
    started = Server(data_dir, free_port())
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait()


def test_serve_grpcurl_persistence_and_clean_stop(server: Server, data_dir: Path) -> None:
    server.wait_serving()
    listed = server.grpcurl("list")
    assert {"baton.v1.AgentService", "baton.v1.WorkflowService", "grpc.health.v1.Health"} <= set(
        listed.split()
    )
    described = server.grpcurl("describe", "baton.v1.WorkflowService")
    assert "rpc ListWorkflowVersions" in described
    assert "/api/v1/workflows/{workflow_id}/versions" in described

    agent = server.grpcurl(
        "baton.v1.AgentService/CreateAgent",
        data={
            "name": "data-processor",
            "url": "http://data-processor:8080",
            "description": "Processes data transformations",
            "auth_type": "bearer",
            "auth_config": {"token": "secret-token-123"},
            "timeout_ms": 60000,
        },
    )
    assert agent["auth_type"] == "bearer"
    assert "auth_config" not in agent
    workflow = server.grpcurl(
        "baton.v1.WorkflowService/CreateWorkflow",
        data={
            "name": "p",
            "start_step": "a",
            "steps": {
                "a": {
                    "id": "a",
                    "agent_name": "data-processor",
                    "next_step": None,
                    "input_mapping": {"x": "${workflow.input.x}"},
                }
            },
        },
    )
    assert workflow["version"] == 1

    descendants = children_of(server.process.pid)
    assert len(descendants) >= 2, "expected embedded PostgreSQL and Redis processes"
    assert server.stop(signal.SIGINT) == 0
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in descendants) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in descendants if alive(pid)], "processes left behind"

    again = Server(data_dir, server.grpc_port)
    try:
        again.wait_serving()
        fetched = again.grpcurl("baton.v1.AgentService/GetAgent", data={"agent_id": agent["id"]})
        assert fetched["name"] == "data-processor"
        versions = again.grpcurl(
            "baton.v1.WorkflowService/ListWorkflowVersions", data={"workflow_id": workflow["id"]}
        )
        assert versions["total"] == 1
        assert again.stop() == 0
    finally:
        if again.process.poll() is None:
            again.process.kill()


def test_second_instance_on_the_same_data_dir_fails_fast(server: Server, data_dir: Path) -> None:
    server.wait_serving()
    started = time.monotonic()
    second = Server(data_dir, free_port())
    assert second.process.wait(timeout=15) != 0
    assert time.monotonic() - started < 10
    output = second.output()
    assert "in use" in output, output
    assert str(data_dir) in output, output
    server.wait_serving(timeout=5)  # the first one is unaffected


def test_taken_port_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        started = time.monotonic()
        taken = Server(tmp_path / "data", port)
        assert taken.process.wait(timeout=15) != 0
        assert time.monotonic() - started < 10
        output = taken.output()
    assert f"port {port}" in output, output
    assert "in use" in output, output
    assert not (tmp_path / "data").exists(), "nothing should start when the port is taken"
