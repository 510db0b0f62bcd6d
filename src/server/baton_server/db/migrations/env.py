"""Alembic environment: runs on the connection ``baton_server.db.migrate`` hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from baton_server.db.tables import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `baton migrate`, which provides the connection")

context.configure(connection=connection, target_metadata=metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
