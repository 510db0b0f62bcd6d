"""Creates the async engine; one per process, shared by every service."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg-backed engine.

    No ``pool_pre_ping``: it would cost a round trip on every checkout, on every call.
    After a database restart the first call on each stale connection fails with
    UNAVAILABLE (the pool then drops that connection), and a retry succeeds.
    """
    return create_async_engine(database_url, pool_size=pool_size, max_overflow=pool_size)
