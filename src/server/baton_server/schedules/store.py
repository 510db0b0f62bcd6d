"""Schedule and fire queries, in plain SQL on asyncpg (the caller's connection)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from baton_server.paging import Page, PageRequest
from baton_server.runs.store import Connection
from baton_server.schedules.model import Schedule, ScheduleFire

#: Fires kept per schedule; older ones are pruned as new ones are recorded.
FIRES_KEPT = 1000

_SELECT = """
SELECT s.id, s.project_id, s.workflow_id, w.name AS workflow_name,
       w.status AS workflow_status, s.name, s.description, s.schedule_type,
       s.cron_expression, s.interval_value, s.interval_unit, s.execution_time, s.anchor_at,
       s.parameters, s.enabled, s.timezone, s.overlap_policy, s.catchup_window_s,
       s.next_fire_at, s.last_run_id, s.last_slot_at, r.status AS last_run_status,
       r.created_at AS last_run_started_at,
       COALESCE(r.completed_at, r.cancelled_at) AS last_run_completed_at,
       s.missed_count, s.skipped_count, s.created_by, s.created_at, s.updated_at
FROM schedules s
JOIN workflows w ON w.id = s.workflow_id
LEFT JOIN runs r ON r.id = s.last_run_id
"""
_FIRE_COLUMNS = (
    "scheduled_for, outcome, run_id, cancelled_run_id, reason, missed_count, missed_until,"
    " created_at"
)


def _schedule(row: asyncpg.Record) -> Schedule:
    values = dict(row)
    values["parameters"] = json.loads(values["parameters"])
    return Schedule(**values)


async def insert(conn: Connection, values: Mapping[str, Any]) -> None:
    names = list(values)
    await conn.execute(
        f"INSERT INTO schedules ({', '.join(names)})"
        f" VALUES ({', '.join(f'${i}' for i in range(1, len(names) + 1))})",
        *(_column(name, value) for name, value in values.items()),
    )


def _column(name: str, value: Any) -> Any:
    return json.dumps(value, separators=(",", ":")) if name == "parameters" else value


async def get(
    conn: Connection, project_id: uuid.UUID, schedule_id: uuid.UUID, *, for_update: bool = False
) -> Schedule | None:
    row = await conn.fetchrow(
        _SELECT
        + " WHERE s.id = $1 AND s.project_id = $2"
        + (" FOR UPDATE OF s" if for_update else ""),
        schedule_id,
        project_id,
    )
    return _schedule(row) if row else None


async def update(conn: Connection, schedule_id: uuid.UUID, values: Mapping[str, Any]) -> None:
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(values, start=2))
    await conn.execute(
        f"UPDATE schedules SET {assignments}, updated_at = now() WHERE id = $1",
        schedule_id,
        *(_column(name, value) for name, value in values.items()),
    )


async def delete(
    conn: Connection, project_id: uuid.UUID, schedule_id: uuid.UUID
) -> Schedule | None:
    """Delete a schedule; the deleted one, or None if the project has none with the id."""
    found = await get(conn, project_id, schedule_id, for_update=True)
    if found is not None:
        await conn.execute("DELETE FROM schedules WHERE id = $1", schedule_id)
    return found


async def list_page(
    conn: Connection,
    project_id: uuid.UUID,
    *,
    workflow_id: uuid.UUID | None,
    enabled: bool | None,
    page: PageRequest,
) -> Page[Schedule]:
    where = (
        " WHERE s.project_id = $1 AND ($2::uuid IS NULL OR s.workflow_id = $2)"
        " AND ($3::boolean IS NULL OR s.enabled = $3)"
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM schedules s" + where, project_id, workflow_id, enabled
    )
    rows = await conn.fetch(
        _SELECT + where + f" ORDER BY s.created_at DESC, s.id"
        f" LIMIT {page.page_size:d} OFFSET {page.offset:d}",
        project_id,
        workflow_id,
        enabled,
    )
    return Page(items=[_schedule(r) for r in rows], total=total, request=page)


# -- firing ------------------------------------------------------------------------------


async def claim_due(conn: Connection, now: datetime) -> Schedule | None:
    """The most overdue enabled schedule, locked for this transaction; schedules other
    transactions hold are skipped, so any number of schedulers share the work."""
    row = await conn.fetchrow(
        _SELECT + " WHERE s.enabled AND s.next_fire_at <= $1"
        " ORDER BY s.next_fire_at LIMIT 1 FOR UPDATE OF s SKIP LOCKED",
        now,
    )
    return _schedule(row) if row else None


async def next_due(conn: Connection) -> datetime | None:
    """When the earliest enabled schedule is due."""
    due: datetime | None = await conn.fetchval(
        "SELECT min(next_fire_at) FROM schedules WHERE enabled"
    )
    return due


async def advance(
    conn: Connection,
    schedule: Schedule,
    *,
    next_fire_at: datetime | None,
    last_run_id: str | None,
    last_slot_at: datetime | None,
    missed: int,
    skipped: int,
) -> bool:
    """Move a claimed schedule past its slot: a compare-and-set on the slot claimed."""
    done: str = await conn.execute(
        "UPDATE schedules SET next_fire_at = $3, last_run_id = $4, last_slot_at = $5,"
        " missed_count = missed_count + $6, skipped_count = skipped_count + $7"
        " WHERE id = $1 AND next_fire_at = $2",
        schedule.id,
        schedule.next_fire_at,
        next_fire_at,
        last_run_id,
        last_slot_at,
        missed,
        skipped,
    )
    return done == "UPDATE 1"


async def set_last_run(
    conn: Connection, schedule_id: uuid.UUID, run_id: str, slot: datetime
) -> None:
    """Record a manually triggered run as the schedule's last, keeping its next slot."""
    await conn.execute(
        "UPDATE schedules SET last_run_id = $2, last_slot_at = $3 WHERE id = $1",
        schedule_id,
        run_id,
        slot,
    )


async def record_fire(
    conn: Connection,
    schedule_id: uuid.UUID,
    *,
    scheduled_for: datetime,
    outcome: str,
    run_id: str | None = None,
    cancelled_run_id: str | None = None,
    reason: str | None = None,
    missed_count: int | None = None,
    missed_until: datetime | None = None,
) -> None:
    """Record what a slot came to, and forget the schedule's oldest fires beyond
    ``FIRES_KEPT``."""
    await conn.execute(
        "INSERT INTO schedule_fires (schedule_id, scheduled_for, outcome, run_id,"
        " cancelled_run_id, reason, missed_count, missed_until)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        schedule_id,
        scheduled_for,
        outcome,
        run_id,
        cancelled_run_id,
        reason,
        missed_count,
        missed_until,
    )
    await conn.execute(
        "DELETE FROM schedule_fires WHERE schedule_id = $1 AND id <= ("
        f"SELECT id FROM schedule_fires WHERE schedule_id = $1"
        f" ORDER BY id DESC OFFSET {FIRES_KEPT:d} LIMIT 1)",
        schedule_id,
    )


async def list_fires(
    conn: Connection, schedule_id: uuid.UUID, outcome: str | None, page: PageRequest
) -> Page[ScheduleFire]:
    where = " WHERE schedule_id = $1 AND ($2::text IS NULL OR outcome = $2)"
    total: int = await conn.fetchval(
        "SELECT count(*) FROM schedule_fires" + where, schedule_id, outcome
    )
    rows = await conn.fetch(
        f"SELECT {_FIRE_COLUMNS} FROM schedule_fires"
        + where
        + f" ORDER BY id DESC LIMIT {page.page_size:d} OFFSET {page.offset:d}",
        schedule_id,
        outcome,
    )
    return Page(items=[ScheduleFire(**dict(r)) for r in rows], total=total, request=page)
