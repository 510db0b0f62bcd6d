"""Access-control helpers shared by tests: the test secret key, and API keys made
straight in the database (as `baton keys create` does)."""

from __future__ import annotations

import uuid

from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine

from baton_server.access import service, store
from baton_server.access.model import Role
from baton_server.db.tables import DEFAULT_PROJECT_ID
from baton_server.sealing import SecretBox

#: The secret key of every test server and worker (they must share one).
TEST_SECRET_KEY = Fernet.generate_key().decode()
TEST_SECRETS = SecretBox([TEST_SECRET_KEY])


async def make_project(engine: AsyncEngine, name: str) -> uuid.UUID:
    async with engine.begin() as conn:
        return (await store.insert_project(conn, name, "")).id


async def make_key(
    engine: AsyncEngine,
    role: Role,
    *,
    name: str | None = None,
    project_id: uuid.UUID = DEFAULT_PROJECT_ID,
) -> str:
    """A new API key's secret."""
    async with engine.begin() as conn:
        _, secret = await service.create_key(
            conn,
            name=name or f"{role.name}-{uuid.uuid4().hex[:6]}",
            role=role,
            project_id=project_id,
            expires_at=None,
            created_by="test",
        )
    return secret
