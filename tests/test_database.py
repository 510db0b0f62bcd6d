"""The database layer: migrations match the declared schema; an unreachable database
is reported as UNAVAILABLE."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
import redis.asyncio as redis
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.v1 import agents_pb2, agents_pb2_grpc, runs_pb2, runs_pb2_grpc
from baton_server.app import start_grpc
from baton_server.db import migrate
from baton_server.db.engine import create_engine
from baton_server.db.tables import metadata
from tests.access_support import TEST_SECRETS
from tests.agents.process import unused_loopback_port
from tests.rpc_errors import failure


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_the_declared_tables(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        differences = await conn.run_sync(_differences)
    assert differences == []


async def test_migrations_are_current_and_idempotent(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)  # a second upgrade is a no-op
    assert await migrate.is_current(engine)


async def test_an_unreachable_database_is_unavailable_not_internal(
    redis_client: redis.Redis,
) -> None:
    dead = create_engine(f"postgresql+asyncpg://baton@127.0.0.1:{unused_loopback_port()}/baton")
    app = await start_grpc(dead, redis_client, "127.0.0.1:0", secrets=TEST_SECRETS)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            agents = agents_pb2_grpc.AgentServiceStub(channel)
            runs = runs_pb2_grpc.RunServiceStub(channel)
            # SQLAlchemy (agents) and plain asyncpg (runs) fail the same way.
            calls: list[Any] = [
                agents.ListAgents(agents_pb2.ListAgentsRequest()),
                runs.GetRun(runs_pb2.GetRunRequest(run_id="run-x")),
                runs.ExecuteWorkflow(
                    runs_pb2.ExecuteWorkflowRequest(workflow_id=str(uuid.uuid4()))
                ),
            ]
            for call in calls:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                found = failure(caught.value)
                assert (found.code, found.reason) == (
                    grpc.StatusCode.UNAVAILABLE,
                    "DEPENDENCY_UNAVAILABLE",
                )
    finally:
        await app.stop(grace=0)
        await dead.dispose()


async def test_data_from_before_projects_lands_in_the_default_project_sealed(
    backend_urls: tuple[str, str],
) -> None:
    from alembic import command
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from baton_server.db.tables import DEFAULT_PROJECT_ID
    from baton_server.sealing import seal_stored

    server = make_url(backend_urls[0])
    name = f"baton_migrate_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(server.set(database=name).render_as_string(hide_password=False))
    try:

        def to_0003(connection: Connection) -> None:
            config = migrate.alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")

        async with engine.begin() as conn:
            await conn.run_sync(to_0003)
            await conn.execute(
                text(
                    "INSERT INTO agents (id, name, url, auth_type, auth_config, timeout_ms,"
                    " max_retries, initial_delay_ms, max_delay_ms, backoff_multiplier, status)"
                    " VALUES (gen_random_uuid(), 'old', 'http://x:1', 'bearer',"
                    " '{\"token\": \"plain-secret\"}', 1000, 0, 100, 1000, 1.0, 'active')"
                )
            )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT project_id, auth_config FROM agents"))).one()
        assert row.project_id == DEFAULT_PROJECT_ID
        assert await seal_stored(engine, TEST_SECRETS) == 1
        async with engine.connect() as conn:
            sealed = (await conn.execute(text("SELECT auth_config FROM agents"))).scalar_one()
        assert "plain-secret" not in sealed
        assert TEST_SECRETS.open(sealed) == {"token": "plain-secret"}
    finally:
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        await admin.dispose()
