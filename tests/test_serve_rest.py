"""``baton serve`` with its Envoy, as a user runs it: REST and gRPC on --http-port, Envoy
restarted when it dies, stopped with Baton, and never outliving it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_serve import GRPCURL, Server, alive, children_of, free_port


@pytest.fixture
def server(data_dir: Path) -> Iterator[Server]:
    started = Server(data_dir, free_port())
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait()


def envoy_pids(server: Server) -> list[int]:
    found = []
    for pid in children_of(server.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if command.endswith(b"/envoy"):
            found.append(pid)
    return found


def wait_rest(base: str, timeout: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(f"{base}/health", timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_rest_and_grpc_on_the_http_port_with_envoy_supervised(
    server: Server, data_dir: Path
) -> None:
    server.wait_serving()
    base = f"http://127.0.0.1:{server.http_port}"
    assert wait_rest(base).json()["status"] == "healthy"
    created = httpx.post(
        f"{base}/api/v1/agents", json={"name": "my-first-agent", "url": "http://my-agent:8080"}
    )
    assert created.status_code == 201
    listed = subprocess.run(
        [GRPCURL, "-plaintext", f"localhost:{server.http_port}", "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert "baton.v1.SystemService" in listed
    fetched = subprocess.run(
        [
            GRPCURL,
            "-plaintext",
            "-d",
            json.dumps({"agent_id": created.json()["id"]}),
            f"localhost:{server.http_port}",
            "baton.v1.AgentService/GetAgent",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert json.loads(fetched)["name"] == "my-first-agent"
    config = (data_dir / "envoy" / "envoy.yaml").read_text()
    assert f"port_value: {server.http_port}" in config
    assert f"port_value: {server.grpc_port}" in config

    # Envoy dies: Baton starts it again.
    [envoy] = envoy_pids(server)
    os.kill(envoy, signal.SIGKILL)
    time.sleep(0.2)
    assert wait_rest(base).status_code == 200
    [restarted] = envoy_pids(server)
    assert restarted != envoy

    descendants = children_of(server.process.pid)
    assert server.stop() == 0
    assert "Envoy exited with code -9; restarting it" in server.output()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in descendants) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in descendants if alive(pid)], "processes left behind"


def test_envoy_does_not_outlive_a_killed_baton(server: Server) -> None:
    server.wait_serving()
    [envoy] = envoy_pids(server)
    server.process.kill()
    server.process.wait()
    deadline = time.monotonic() + 10
    while alive(envoy) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(envoy)


def test_taken_http_port_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        started = time.monotonic()
        taken = Server(tmp_path / "data", free_port(), http_port=port)
        assert taken.process.wait(timeout=15) != 0
        assert time.monotonic() - started < 10
        output = taken.output()
    assert f"port {port} on 127.0.0.1 is already in use" in output, output
    assert "--http-port" in output, output
    assert not (tmp_path / "data").exists(), "nothing should start when the port is taken"
