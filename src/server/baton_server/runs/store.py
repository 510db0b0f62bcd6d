"""Run queries used by the API. Every function takes the caller's connection.

Every change goes through a compare-and-set on the run's status and appends its events
in the same transaction (``append_events``), so the event log never disagrees with the
state it describes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from baton_server.db.pages import fetch_page
from baton_server.db.tables import run_events, run_steps, runs
from baton_server.paging import Page, PageRequest, Sort
from baton_server.runs import events
from baton_server.runs.model import (
    FAILED,
    PENDING,
    RUNNING,
    EventDraft,
    Run,
    RunEvent,
    RunStep,
)

REQUEST_ID_INDEX = "uq_runs_workflow_id_request_id"

_SORT_COLUMNS = {
    "created_at": runs.c.created_at,
    "updated_at": runs.c.updated_at,
    "completed_at": runs.c.completed_at,
    "status": runs.c.status,
}
_RUN_COLUMNS = [
    c
    for c in runs.c
    if c.name not in {"lease_owner", "lease_expires_at", "enqueued_at", "event_seq"}
]


def to_run(row: Any) -> Run:
    return Run(**{c.name: getattr(row, c.name) for c in _RUN_COLUMNS})


def to_step(row: Any) -> RunStep:
    return RunStep(**{c.name: getattr(row, c.name) for c in run_steps.c})


def to_event(row: Any) -> RunEvent:
    return RunEvent(**{c.name: getattr(row, c.name) for c in run_events.c})


async def append_events(
    conn: AsyncConnection,
    run_id: str,
    drafts: Sequence[EventDraft],
    *,
    status: str,
    progress: int,
) -> list[RunEvent]:
    """Append events with the next gap-free sequence numbers of the run.

    The ``UPDATE ... RETURNING`` takes the run's row lock, so concurrent writers of the
    same run (the executor, a cancel) get disjoint, consecutive numbers. Every event
    records the run's ``status`` and ``progress`` after the change.
    """
    last = (
        await conn.execute(
            runs.update()
            .where(runs.c.id == run_id)
            .values(event_seq=runs.c.event_seq + len(drafts))
            .returning(runs.c.event_seq)
        )
    ).scalar_one()
    return await insert_events(
        conn, run_id, drafts, first=last - len(drafts) + 1, status=status, progress=progress
    )


async def insert_events(
    conn: AsyncConnection,
    run_id: str,
    drafts: Sequence[EventDraft],
    *,
    first: int,
    status: str,
    progress: int,
) -> list[RunEvent]:
    """Insert events numbered from ``first``; the caller reserved those numbers."""
    rows = await conn.execute(
        run_events.insert().returning(*run_events.c),
        [
            {
                "run_id": run_id,
                "sequence": first + i,
                "type": d.type,
                "step_id": d.step_id,
                "level": d.level,
                "message": d.message,
                "data": {**(d.data or {}), "status": status, "progress": progress},
            }
            for i, d in enumerate(drafts)
        ],
    )
    return sorted((to_event(r) for r in rows), key=lambda e: e.sequence)


async def insert(
    conn: AsyncConnection, values: dict[str, Any], steps: Sequence[dict[str, Any]]
) -> Run:
    row = (await conn.execute(runs.insert().values(**values).returning(*_RUN_COLUMNS))).one()
    await conn.execute(run_steps.insert(), list(steps))
    return to_run(row)


async def get(conn: AsyncConnection, run_id: str) -> Run | None:
    row = (await conn.execute(sa.select(*_RUN_COLUMNS).where(runs.c.id == run_id))).one_or_none()
    return to_run(row) if row else None


async def find_by_request_id(
    conn: AsyncConnection, workflow_id: uuid.UUID, request_id: str
) -> Run | None:
    row = (
        await conn.execute(
            sa.select(*_RUN_COLUMNS).where(
                runs.c.workflow_id == workflow_id, runs.c.request_id == request_id
            )
        )
    ).one_or_none()
    return to_run(row) if row else None


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def list_page(
    conn: AsyncConnection,
    *,
    status: str | None,
    workflow_id: str | None,
    definition_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    sort: Sort,
    page: PageRequest,
) -> Page[Run]:
    conditions: list[sa.ColumnElement[bool]] = []
    if status:
        conditions.append(runs.c.status == status)
    # Ids are UUIDs; any other value matches no run (rather than being an error).
    for column, value in ((runs.c.workflow_id, workflow_id), (runs.c.definition_id, definition_id)):
        if value:
            parsed = _uuid_or_none(value)
            conditions.append(column == parsed if parsed else sa.false())
    if created_after:
        conditions.append(runs.c.created_at >= created_after)
    if created_before:
        conditions.append(runs.c.created_at < created_before)
    return await fetch_page(
        conn,
        sa.select(*_RUN_COLUMNS),
        table=runs,
        conditions=conditions,
        sort_columns=_SORT_COLUMNS,
        sort=sort,
        page=page,
        convert=to_run,
    )


async def list_steps(conn: AsyncConnection, run_id: str) -> list[RunStep]:
    rows = await conn.execute(
        sa.select(run_steps)
        .where(run_steps.c.run_id == run_id)
        .order_by(run_steps.c.started_at.asc().nulls_last(), run_steps.c.position)
    )
    return [to_step(r) for r in rows]


async def list_events(
    conn: AsyncConnection,
    run_id: str,
    *,
    after_sequence: int = 0,
    limit: int = 1000,
    types: Sequence[str] | None = None,
    step_id: str | None = None,
) -> list[RunEvent]:
    query = sa.select(run_events).where(
        run_events.c.run_id == run_id, run_events.c.sequence > after_sequence
    )
    if types:
        query = query.where(run_events.c.type.in_(types))
    if step_id:
        query = query.where(run_events.c.step_id == step_id)
    rows = await conn.execute(query.order_by(run_events.c.sequence).limit(limit))
    return [to_event(r) for r in rows]


async def cancel(
    conn: AsyncConnection, run_id: str, *, reason: str, cancelled_by: str
) -> tuple[Run, list[RunEvent]] | None:
    """PENDING/RUNNING -> CANCELLED; the step in flight is marked FAILED. None if not allowed."""
    message = f"Cancelled: {reason}"
    row = (
        await conn.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.status.in_((PENDING, RUNNING)))
            .values(
                status="CANCELLED",
                error_message=message,
                cancelled_by=cancelled_by,
                cancelled_at=sa.func.now(),
                updated_at=sa.func.now(),
                lease_owner=None,
                lease_expires_at=None,
            )
            .returning(*_RUN_COLUMNS)
        )
    ).one_or_none()
    if row is None:
        return None
    abandoned = (
        (
            await conn.execute(
                run_steps.update()
                .where(run_steps.c.run_id == run_id, run_steps.c.status == RUNNING)
                .values(status=FAILED, error_message=message, completed_at=sa.func.now())
                .returning(run_steps.c.step_id)
            )
        )
        .scalars()
        .all()
    )
    run = to_run(row)
    written = await append_events(
        conn,
        run_id,
        [
            *(
                EventDraft(type=events.STEP_FAILED, step_id=s, data={"error": message})
                for s in abandoned
            ),
            events.log(f"Run cancelled by {cancelled_by}: {reason}", level="warning"),
            events.run_status("CANCELLED", progress=run.progress, error_message=message),
        ],
        status=run.status,
        progress=run.progress,
    )
    return run, written


async def reset_for_retry(conn: AsyncConnection, run_id: str) -> tuple[Run, list[RunEvent]] | None:
    """FAILED/CANCELLED -> PENDING; unfinished steps back to PENDING. None if not allowed."""
    row = (
        await conn.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.status.in_((FAILED, "CANCELLED")))
            .values(
                status=PENDING,
                error_message=None,
                completed_at=None,
                cancelled_at=None,
                cancelled_by=None,
                updated_at=sa.func.now(),
                enqueued_at=sa.func.now(),
            )
            .returning(*_RUN_COLUMNS)
        )
    ).one_or_none()
    if row is None:
        return None
    await conn.execute(
        run_steps.update()
        .where(run_steps.c.run_id == run_id, run_steps.c.status != "COMPLETED")
        .values(status=PENDING, error_message=None, completed_at=None)
    )
    run = to_run(row)
    written = await append_events(
        conn,
        run_id,
        [
            events.log("Run retried: resuming from the first incomplete step"),
            events.run_status(PENDING, progress=run.progress),
        ],
        status=run.status,
        progress=run.progress,
    )
    return run, written


async def last_sequence(conn: AsyncConnection, run_id: str) -> int:
    value: int = (
        await conn.execute(sa.select(runs.c.event_seq).where(runs.c.id == run_id))
    ).scalar_one()
    return value
