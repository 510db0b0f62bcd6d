"""The Alembic migrations create exactly the schema declared in ``db/tables.py``."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.db import migrate
from baton_server.db.tables import metadata


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
