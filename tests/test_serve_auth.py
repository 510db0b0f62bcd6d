"""``baton serve --auth required`` as a new user meets it: the first admin key made with
``baton keys create --direct``, then projects, keys and roles through REST and grpcurl."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_serve import BATON, GRPCURL, Server, free_port


@pytest.fixture
def secured(data_dir: Path) -> Iterator[Server]:
    started = Server(
        data_dir,
        free_port(),
        options=("--auth", "required"),
        env={"BATON_RATE_LIMITS": "viewer=30"},
    )
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait()


def baton(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    return subprocess.run(
        [str(BATON), *args], capture_output=True, text=True, timeout=60, env=clean | (env or {})
    )


def test_required_auth_from_the_first_admin_key_to_isolated_projects(
    secured: Server, data_dir: Path
) -> None:
    secured.wait_serving()
    base = f"http://127.0.0.1:{secured.http_port}"
    with httpx.Client(base_url=base, timeout=30) as rest:
        # Without a credential: 401 over REST, UNAUTHENTICATED over grpcurl; health is open.
        assert rest.get("/health").status_code == 200
        refused = rest.get("/api/v1/agents")
        assert refused.status_code == 401
        assert "credential" in refused.json()["message"]
        anonymous = subprocess.run(
            [
                GRPCURL,
                "-plaintext",
                f"localhost:{secured.grpc_port}",
                "baton.v1.AgentService/ListAgents",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert anonymous.returncode != 0
        assert "Unauthenticated" in anonymous.stderr

        # The first admin key, made against the database of the running server.
        made = baton(
            "keys",
            "create",
            "--direct",
            "--role",
            "admin",
            "--name",
            "root",
            "--data-dir",
            str(data_dir),
            "--json",
        )
        assert made.returncode == 0, made.stderr
        admin = {"X-API-Key": json.loads(made.stdout)["secret"]}

        projects = {}
        for name in ("team-a", "team-b"):
            created = rest.post("/api/v1/projects", json={"name": name}, headers=admin)
            assert created.status_code == 201, created.text
            projects[name] = created.json()["id"]
        keys = {}
        for name, role, project in (
            ("a-viewer", "viewer", "team-a"),
            ("a-editor", "editor", "team-a"),
            ("b-editor", "editor", "team-b"),
        ):
            created = rest.post(
                "/api/v1/api_keys",
                json={"name": name, "role": role, "project_id": projects[project]},
                headers=admin,
            )
            assert created.status_code == 201, created.text
            keys[name] = {"X-API-Key": created.json()["secret"]}

        agent = rest.post(
            "/api/v1/agents",
            json={"name": "my-first-agent", "url": "http://my-agent:8080"},
            headers=keys["a-editor"],
        )
        assert agent.status_code == 201, agent.text
        for header in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
            assert header in agent.headers
        agent_id = agent.json()["id"]
        # B sees nothing of A, and answers exactly as for a missing id.
        assert rest.get(f"/api/v1/agents/{agent_id}", headers=keys["b-editor"]).status_code == 404
        assert rest.get("/api/v1/agents", headers=keys["b-editor"]).json()["total"] == 0
        # The same name is free in project B.
        other = rest.post(
            "/api/v1/agents",
            json={"name": "my-first-agent", "url": "http://my-agent:8080"},
            headers=keys["b-editor"],
        )
        assert other.status_code == 201
        # A's viewer reads but cannot write.
        assert rest.get(f"/api/v1/agents/{agent_id}", headers=keys["a-viewer"]).status_code == 200
        denied = rest.put(
            f"/api/v1/agents/{agent_id}", json={"description": "x"}, headers=keys["a-viewer"]
        )
        assert denied.status_code == 403
        assert "viewer" in denied.json()["message"]
        # A burst past the viewer's limit (30 per minute here): 429 with Retry-After.
        statuses = [
            rest.get("/api/v1/agents", headers=keys["a-viewer"]).status_code for _ in range(30)
        ]
        assert statuses[-1] == 429
        burst = rest.get("/api/v1/agents", headers=keys["a-viewer"])
        assert burst.status_code == 429
        assert int(burst.headers["retry-after"]) >= 1

    # The CLI reads the key from the environment.
    listed = baton(
        "keys",
        "list",
        "--json",
        "--server",
        f"127.0.0.1:{secured.grpc_port}",
        env={"BATON_API_KEY": admin["X-API-Key"]},
    )
    assert listed.returncode == 0, listed.stderr
    assert {key["name"] for key in json.loads(listed.stdout)} >= {"root", "a-viewer", "b-editor"}
    secrets_in_output = [key for key in json.loads(listed.stdout) if "secret" in key]
    assert not secrets_in_output


def refused_start(tmp_path: Path, *options: str, env: dict[str, str] | None = None) -> str:
    """``baton serve`` that must fail at once, before making its data directory; its
    error output."""
    refused = baton(
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--grpc-port",
        str(free_port()),
        "--http-port",
        str(free_port()),
        *options,
        env=env,
    )
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "data").exists()
    return refused.stderr


def test_listening_beyond_loopback_without_auth_refuses_to_start(tmp_path: Path) -> None:
    assert "--auth required" in refused_start(tmp_path, "--host", "0.0.0.0")


def test_a_missing_jwt_key_file_is_a_clear_start_up_error(tmp_path: Path) -> None:
    missing = {"BATON_JWT_PUBLIC_KEY_FILE": str(tmp_path / "missing.pem")}
    assert "JWT configuration" in refused_start(tmp_path, env=missing)
