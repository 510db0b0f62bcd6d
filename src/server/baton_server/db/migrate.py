"""Applies the Alembic migrations (``baton migrate``; ``baton serve`` does it at start)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

# Any constant works; it only has to be the same for every Baton process, so that
# servers starting together migrate one after the other.
_MIGRATION_LOCK = 0x6261746F6E


def alembic_config() -> Config:
    """The Alembic configuration, built in code so no ``alembic.ini`` is needed."""
    config = Config()
    config.set_main_option("script_location", "baton_server.db:migrations")
    return config


def _upgrade(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _is_current(connection: Connection) -> bool:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    return MigrationContext.configure(connection).get_current_revision() == head


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision, holding a lock against other servers."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


async def is_current(engine: AsyncEngine) -> bool:
    """True when the database schema is at the newest revision."""
    async with engine.connect() as connection:
        return await connection.run_sync(_is_current)
