"""Shared fixtures: real PostgreSQL and Redis, an in-process Baton server on port 0.

PostgreSQL and Redis are the embedded ones (started once per test session in a temporary
directory) unless ``BATON_TEST_DATABASE_URL`` / ``BATON_TEST_REDIS_URL`` point elsewhere.
Either way the tests create a database of their own and drop it at the end, so they never
touch existing data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
import redis.asyncio as redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from baton.v1 import agents_pb2_grpc, runs_pb2_grpc, workflows_pb2_grpc
from baton_server.app import GrpcApp, start_grpc
from baton_server.db import migrate
from baton_server.db.engine import create_engine
from baton_server.db.pool import create_pool
from baton_server.db.tables import DEFAULT_PROJECT_ID, DEFAULT_PROJECT_NAME, metadata, projects
from baton_server.embedded import EmbeddedServices, run_embedded
from baton_server.executor.worker import Worker, WorkerSettings
from baton_server.webhooks.delivery import DeliverySettings
from tests.access_support import TEST_SECRETS
from tests.agents.process import AgentProcess

# The REST fixtures (a real Envoy in front of grpc_app) and the browser live in their
# own modules.
pytest_plugins = ["tests.rest_support", "tests.browser_support"]


@pytest.fixture(scope="session")
async def backend_urls() -> AsyncIterator[tuple[str, str]]:
    """(PostgreSQL server URL, Redis URL) for the whole session."""
    database_url = os.environ.get("BATON_TEST_DATABASE_URL")
    redis_url = os.environ.get("BATON_TEST_REDIS_URL")
    if database_url and redis_url:
        yield database_url, redis_url
        return
    services: EmbeddedServices
    # Not under pytest's tmp dir: a concurrent pytest session resets its permissions,
    # which the embedded servers' unprivileged user (when run as root) relies on.
    data_dir = Path(tempfile.mkdtemp(prefix="baton-test-"))
    try:
        async with run_embedded(data_dir) as services:
            yield database_url or services.database_url, redis_url or services.redis_url
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def database_url(backend_urls: tuple[str, str]) -> AsyncIterator[str]:
    """URL of a fresh, migrated database, dropped after the session."""
    server_url = make_url(backend_urls[0])
    name = f"baton_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = server_url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url, pool_size=1)
    await migrate.upgrade(engine)
    await engine.dispose()
    yield url
    async with admin.connect() as conn:
        await conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A plain asyncpg pool on the test database (what the runs hot path uses)."""
    pool = await create_pool(database_url, min_size=0, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(autouse=True)
async def _clean_tables(request: pytest.FixtureRequest) -> None:
    """Every test that uses the database starts from empty tables."""
    if "engine" not in request.fixturenames:
        return
    engine: AsyncEngine = request.getfixturevalue("engine")
    tables = ", ".join(t.name for t in metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"TRUNCATE {tables} CASCADE"))
        # The migration's default project, which every installation has.
        await conn.execute(
            projects.insert().values(id=DEFAULT_PROJECT_ID, name=DEFAULT_PROJECT_NAME)
        )


@pytest.fixture(scope="session")
async def redis_url(backend_urls: tuple[str, str]) -> str:
    return backend_urls[1]


@pytest.fixture(scope="session")
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
async def grpc_app(engine: AsyncEngine, redis_client: redis.Redis) -> AsyncIterator[GrpcApp]:
    """An in-process Baton gRPC server on a free port, SERVING."""
    app = await start_grpc(engine, redis_client, "127.0.0.1:0", secrets=TEST_SECRETS)
    await app.set_serving(True)
    yield app
    await app.stop(grace=1)


# Receivers in the tests listen on loopback; the first retry comes after a fraction of
# a second instead of seconds.
FAST_DELIVERIES = DeliverySettings(first_retry_s=0.4, allow_private=True, poll_s=0.05)
FAST_WORKER = WorkerSettings(
    lease_ttl_s=2.0,
    reconcile_interval_s=0.3,
    enqueue_grace_s=1.0,
    block_ms=200,
)


@pytest.fixture
async def worker(database_url: str, redis_url: str, engine: AsyncEngine) -> AsyncIterator[Worker]:
    """An in-process executor worker with short leases and a fast reconciler."""
    started = Worker(
        database_url, redis_url, FAST_WORKER, secrets=TEST_SECRETS, deliveries=FAST_DELIVERIES
    )
    await started.start()
    yield started
    await started.stop()


@pytest.fixture(scope="session")
async def channel(grpc_app: GrpcApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_app.port}") as channel:
        yield channel


@pytest.fixture
def agents(channel: grpc.aio.Channel, engine: AsyncEngine) -> agents_pb2_grpc.AgentServiceAsyncStub:
    return agents_pb2_grpc.AgentServiceStub(channel)


@pytest.fixture
def runs(channel: grpc.aio.Channel, engine: AsyncEngine) -> runs_pb2_grpc.RunServiceAsyncStub:
    return runs_pb2_grpc.RunServiceStub(channel)


@pytest.fixture
def workflows(
    channel: grpc.aio.Channel, engine: AsyncEngine
) -> workflows_pb2_grpc.WorkflowServiceAsyncStub:
    return workflows_pb2_grpc.WorkflowServiceStub(channel)


@pytest.fixture
def stubs(
    agents: agents_pb2_grpc.AgentServiceAsyncStub,
    workflows: workflows_pb2_grpc.WorkflowServiceAsyncStub,
    runs: runs_pb2_grpc.RunServiceAsyncStub,
    worker: Worker,
) -> tuple[
    agents_pb2_grpc.AgentServiceAsyncStub,
    workflows_pb2_grpc.WorkflowServiceAsyncStub,
    runs_pb2_grpc.RunServiceAsyncStub,
]:
    """The three stubs, with a worker running: for tests that execute runs."""
    return agents, workflows, runs


@pytest.fixture(scope="session")
def echo_agent_url() -> Iterator[str]:
    """A real A2A echo agent (a2a-sdk) in its own process, for the whole session."""
    with AgentProcess() as agent:
        yield agent.start()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def worker_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """``baton worker`` processes a test starts (see ``worker_process``), stopped after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.wait(10)
