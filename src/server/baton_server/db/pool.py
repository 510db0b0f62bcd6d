"""asyncpg pools for the hot paths: runs in the API, and the executor.

SQLAlchemy Core serves the administrative queries (agents, workflows, listings); the
paths taken for every run (start, wait, watch, every step transition) run plain SQL on
asyncpg, which costs a fraction of the CPU per statement.
"""

from __future__ import annotations

import asyncpg


def asyncpg_dsn(database_url: str) -> str:
    """SQLAlchemy's ``postgresql+asyncpg://`` URL as a plain libpq URL for asyncpg."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's reset on release (a round trip per checkout): Baton's queries
    leave no session state behind (no SET, LISTEN, temporary tables)."""


async def create_pool(
    database_url: str,
    *,
    min_size: int,
    max_size: int,
    server_settings: dict[str, str] | None = None,
) -> asyncpg.Pool:
    """A pool of ``max_size`` connections at most; ``min_size=0`` connects lazily, so a
    server can start before PostgreSQL accepts connections. ``server_settings`` are
    session settings of every connection."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        asyncpg_dsn(database_url),
        min_size=min_size,
        max_size=max_size,
        reset=_keep_session,
        server_settings=server_settings,
    )
    return pool
