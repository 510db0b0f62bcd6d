"""Writing events into the outbox, inside the caller's transaction.

Run events need nothing from their writers (the trigger on ``run_events``, migration
0007); everything else calls :func:`emit` (asyncpg) or :func:`emit_sa` (SQLAlchemy) with
the transaction that makes the change, so an event exists exactly when its change does.
An event is queued once when any webhook subscribes to it; deliverers fan it out to the
endpoints (``baton_server.webhooks.delivery``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_server.runs.store import Connection


def envelope(event: str, at: datetime, data: dict[str, Any]) -> str:
    """The JSON body of a delivery: ``{"type", "timestamp", "data"}``."""
    return json.dumps(
        {"type": event, "timestamp": at.isoformat(), "data": data},
        separators=(",", ":"),
        default=str,
    )


async def emit(
    conn: Connection, project_id: uuid.UUID, event: str, at: datetime, data: dict[str, Any]
) -> int:
    """Queue ``event`` if a webhook of the project subscribes to it; returns how many
    do."""
    count: int = await conn.fetchval(
        "SELECT baton_emit_event($1, $2, $3::jsonb)",
        project_id,
        event,
        envelope(event, at, data),
    )
    return count


async def emit_sa(
    conn: AsyncConnection, project_id: uuid.UUID, event: str, at: datetime, data: dict[str, Any]
) -> None:
    """:func:`emit` on a SQLAlchemy connection."""
    await conn.execute(
        sa.text("SELECT baton_emit_event(:project, :event, CAST(:payload AS jsonb))"),
        {"project": project_id, "event": event, "payload": envelope(event, at, data)},
    )
