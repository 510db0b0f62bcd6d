"""Webhook and delivery queries, in plain SQL on asyncpg (the caller's connection)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from baton_server.paging import Page, PageRequest
from baton_server.runs.store import Connection
from baton_server.webhooks.model import Delivery, Webhook

_WEBHOOK_COLUMNS = "id, project_id, url, events, description, enabled, created_at, updated_at"
_DELIVERY_COLUMNS = (
    "id, webhook_id, run_id, event, status, attempts, next_attempt_at, url, last_status_code,"
    " last_duration_ms, last_error, response_excerpt, created_at, delivered_at"
)


def _webhook(row: asyncpg.Record) -> Webhook:
    return Webhook(**dict(row))


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(**dict(row))


async def insert(conn: Connection, values: Mapping[str, Any]) -> Webhook:
    names = list(values)
    row = await conn.fetchrow(
        f"INSERT INTO webhooks ({', '.join(names)})"
        f" VALUES ({', '.join(f'${i}' for i in range(1, len(names) + 1))})"
        f" RETURNING {_WEBHOOK_COLUMNS}",
        *values.values(),
    )
    assert row is not None
    return _webhook(row)


async def get(
    conn: Connection, project_id: uuid.UUID, webhook_id: uuid.UUID, *, for_update: bool = False
) -> Webhook | None:
    row = await conn.fetchrow(
        f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND project_id = $2"
        + (" FOR UPDATE" if for_update else ""),
        webhook_id,
        project_id,
    )
    return _webhook(row) if row else None


async def update(conn: Connection, webhook_id: uuid.UUID, values: Mapping[str, Any]) -> Webhook:
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(values, start=2))
    row = await conn.fetchrow(
        f"UPDATE webhooks SET {assignments}, updated_at = now() WHERE id = $1"
        f" RETURNING {_WEBHOOK_COLUMNS}",
        webhook_id,
        *values.values(),
    )
    assert row is not None
    return _webhook(row)


async def delete(conn: Connection, project_id: uuid.UUID, webhook_id: uuid.UUID) -> bool:
    done: str = await conn.execute(
        "DELETE FROM webhooks WHERE id = $1 AND project_id = $2", webhook_id, project_id
    )
    return done != "DELETE 0"


async def list_page(conn: Connection, project_id: uuid.UUID, page: PageRequest) -> Page[Webhook]:
    total: int = await conn.fetchval(
        "SELECT count(*) FROM webhooks WHERE project_id = $1", project_id
    )
    rows = await conn.fetch(
        f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE project_id = $1"
        f" ORDER BY created_at DESC, id LIMIT {page.page_size:d} OFFSET {page.offset:d}",
        project_id,
    )
    return Page(items=[_webhook(r) for r in rows], total=total, request=page)


async def list_deliveries(
    conn: Connection, webhook_id: uuid.UUID, status: str | None, page: PageRequest
) -> Page[Delivery]:
    where = "webhook_id = $1 AND ($2::text IS NULL OR status = $2)"
    total: int = await conn.fetchval(
        f"SELECT count(*) FROM deliveries WHERE {where}", webhook_id, status
    )
    rows = await conn.fetch(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE {where}"
        f" ORDER BY created_at DESC, id LIMIT {page.page_size:d} OFFSET {page.offset:d}",
        webhook_id,
        status,
    )
    return Page(items=[_delivery(r) for r in rows], total=total, request=page)


async def insert_delivery(
    conn: Connection, project_id: uuid.UUID, webhook_id: uuid.UUID, event: str, payload: str
) -> Delivery:
    row = await conn.fetchrow(
        "INSERT INTO deliveries (id, project_id, webhook_id, event, payload)"
        f" VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING {_DELIVERY_COLUMNS}",
        uuid.uuid4(),
        project_id,
        webhook_id,
        event,
        payload,
    )
    assert row is not None
    return _delivery(row)


async def reschedule(
    conn: Connection, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> Delivery | None:
    """Make a delivery due now (pending again, whatever it was); None if unknown."""
    row = await conn.fetchrow(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = now()"
        " WHERE id = $1 AND webhook_id = $2"
        f" RETURNING {_DELIVERY_COLUMNS}",
        delivery_id,
        webhook_id,
    )
    return _delivery(row) if row else None
