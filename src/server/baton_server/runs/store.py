"""Run queries of the API, in plain SQL on asyncpg. Every function takes the caller's
connection.

Runs are the hot path (every run is started, waited for and watched through here), so
this store speaks SQL directly instead of through SQLAlchemy; the executor's journal
writes the same tables the same way. Every change is a compare-and-set on the run's
status and appends its events in the same transaction (``append_events``), so the
event log never disagrees with the state it describes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, TypeAlias

import asyncpg

from baton_server.paging import Page, PageRequest, Sort
from baton_server.runs import events
from baton_server.runs.model import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PAUSED,
    PENDING,
    RUNNING,
    WAITING,
    EventDraft,
    Run,
    RunEvent,
    RunStep,
)

Connection: TypeAlias = "asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[Any]"

# Column lists are the model's fields: every field of Run, RunStep and RunEvent is a
# column of its table, under the same name.
_RUN_FIELDS = [f.name for f in fields(Run)]
_STEP_FIELDS = [f.name for f in fields(RunStep)]
_EVENT_FIELDS = [f.name for f in fields(RunEvent)]
_RUN_COLUMNS = ", ".join(_RUN_FIELDS)
_STEP_COLUMNS = ", ".join(_STEP_FIELDS)
_EVENT_COLUMNS = ", ".join(_EVENT_FIELDS)
# JSONB columns: asyncpg hands them over as text.
_JSON_FIELDS = frozenset({"input_data", "output", "output_data", "data"})
_SORT_COLUMNS = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "completed_at": "completed_at",
    "status": "status",
    "total_cost": "total_cost",
}


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _values(row: asyncpg.Record | Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    return {n: _loads(row[n]) if n in _JSON_FIELDS else row[n] for n in names}


def to_run(row: asyncpg.Record) -> Run:
    return Run(**_values(row, _RUN_FIELDS))


def to_step(row: asyncpg.Record | Mapping[str, Any]) -> RunStep:
    return RunStep(**_values(row, _STEP_FIELDS))


def to_event(row: asyncpg.Record) -> RunEvent:
    return RunEvent(**_values(row, _EVENT_FIELDS))


# -- starting a run ----------------------------------------------------------------------

# One statement, so one round trip and one commit: check the workflow (it must be active
# and still at the version the caller planned the steps of), insert the run, its steps
# and its first event. With an idempotency key already used, nothing is inserted.
_CREATE = f"""
WITH wf AS (
    SELECT w.id, w.name, w.status, w.version, w.project_id, v.id AS definition_id
    FROM workflows w
    JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.version
    WHERE w.id = $1::uuid AND w.project_id = $10::uuid
), new_run AS (
    INSERT INTO runs (id, workflow_id, workflow_name, definition_id, workflow_version, status,
                      input_data, triggered_by, request_id, enqueued_at, event_seq, project_id,
                      callback_url, timeout_seconds, deadline_at)
    SELECT $2::text, wf.id, wf.name, wf.definition_id, wf.version, 'PENDING', $3::jsonb,
           $4::text, $5::text, now(), 1, wf.project_id, $11::text, $13::int,
           now() + make_interval(secs => $13::int)
    FROM wf
    WHERE wf.status = 'active' AND wf.definition_id = $6::uuid
    ON CONFLICT (workflow_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
    RETURNING {_RUN_COLUMNS}
), new_steps AS (
    INSERT INTO run_steps (id, run_id, step_id, agent_name, position, status)
    SELECT s.id, new_run.id, s.step_id, s.agent_name, s.position - 1, 'PENDING'
    FROM new_run,
         unnest($7::text[], $8::text[], $9::text[]) WITH ORDINALITY
             AS s(id, step_id, agent_name, position)
), new_callback AS (
    INSERT INTO run_callbacks (run_id, secret)
    SELECT new_run.id, $12::text FROM new_run WHERE $12::text IS NOT NULL
), new_event AS (
    INSERT INTO run_events (run_id, sequence, type, level, message, data)
    SELECT new_run.id, 1, '{events.RUN_STATUS}', 'info',
           format('Run created for workflow ''%s'' version %s by %s',
                  new_run.workflow_name, new_run.workflow_version, $4::text),
           '{{"status": "PENDING", "progress": 0}}'::jsonb
    FROM new_run
    RETURNING message
)
SELECT wf.status AS workflow_status, wf.definition_id AS current_definition_id,
       (SELECT message FROM new_event) AS created_message,
       new_run.*
FROM wf LEFT JOIN new_run ON true
"""


@dataclass(frozen=True)
class PlannedStep:
    """A step row to create with a run: its execution id, step id and agent."""

    id: str
    step_id: str
    agent_name: str


@dataclass(frozen=True)
class Callback:
    """Where a run's end is POSTed, and its signing secret (sealed)."""

    url: str
    sealed_secret: str


@dataclass(frozen=True)
class Created:
    """What ``create`` found and did."""

    #: The workflow's status and current version; None when the project has no
    #: workflow with the id.
    workflow_status: str | None
    current_definition_id: uuid.UUID | None
    #: The new run and its first event; None when nothing was inserted (the workflow
    #: is not active, not at the planned version, or the idempotency key was used).
    run: Run | None = None
    written: tuple[RunEvent, ...] = ()


async def create(
    conn: Connection,
    *,
    project_id: uuid.UUID,
    run_id: str,
    workflow_id: uuid.UUID,
    definition_id: uuid.UUID,
    steps: Sequence[PlannedStep],
    input_data: dict[str, Any],
    triggered_by: str,
    request_id: str | None,
    callback: Callback | None = None,
    timeout_seconds: int | None = None,
) -> Created:
    """Insert a run (PENDING), its steps in order, its callback and its first event,
    atomically."""
    row = await conn.fetchrow(
        _CREATE,
        workflow_id,
        run_id,
        _dumps(input_data),
        triggered_by,
        request_id,
        definition_id,
        [s.id for s in steps],
        [s.step_id for s in steps],
        [s.agent_name for s in steps],
        project_id,
        callback.url if callback else None,
        callback.sealed_secret if callback else None,
        timeout_seconds,
    )
    if row is None:
        return Created(workflow_status=None, current_definition_id=None)
    found = Created(row["workflow_status"], row["current_definition_id"])
    if row["id"] is None:
        return found
    run = to_run(row)
    data = {"status": PENDING, "progress": 0}
    message = row["created_message"]
    written = (RunEvent(run.id, 1, events.RUN_STATUS, None, "info", message, data, run.created_at),)
    return Created(found.workflow_status, found.current_definition_id, run, written)


_CURRENT_DEFINITION = """
SELECT v.id, v.workflow_data
FROM workflows w JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.version
WHERE w.id = $1 AND w.project_id = $2
"""


async def current_definition(
    conn: Connection, project_id: uuid.UUID, workflow_id: uuid.UUID
) -> tuple[uuid.UUID, dict[str, Any]] | None:
    """The id and ``workflow_data`` of the current version of the project's workflow
    (None if unknown)."""
    row = await conn.fetchrow(_CURRENT_DEFINITION, workflow_id, project_id)
    return None if row is None else (row["id"], json.loads(row["workflow_data"]))


# -- reading -----------------------------------------------------------------------------


async def get(conn: Connection, project_id: uuid.UUID, run_id: str) -> Run | None:
    """The run if it exists in the project (another project's run is None too)."""
    row = await conn.fetchrow(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = $1 AND project_id = $2", run_id, project_id
    )
    return to_run(row) if row else None


async def find_by_request_id(
    conn: Connection, project_id: uuid.UUID, workflow_id: uuid.UUID, request_id: str
) -> Run | None:
    row = await conn.fetchrow(
        f"SELECT {_RUN_COLUMNS} FROM runs"
        " WHERE workflow_id = $1 AND request_id = $2 AND project_id = $3",
        workflow_id,
        request_id,
        project_id,
    )
    return to_run(row) if row else None


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def list_page(
    conn: Connection,
    project_id: uuid.UUID,
    *,
    project_filter: uuid.UUID | None,
    status: str | None,
    workflow_id: str | None,
    definition_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    min_total_cost: float | None = None,
    max_total_cost: float | None = None,
    sort: Sort,
    page: PageRequest,
) -> Page[Run]:
    """One page of runs; ties broken by id so pages never overlap, and rows without a
    value in the sort column (``completed_at`` of a running run) last."""
    conditions: list[str] = []
    args: list[Any] = []

    def where(template: str, value: Any) -> None:
        args.append(value)
        conditions.append(template.format(f"${len(args)}"))

    where("project_id = {}", project_id)
    if project_filter is not None:
        # The caller's project only: another project's id matches nothing.
        where("project_id = {}", project_filter)
    if status:
        where("status = {}", status)
    # Ids are UUIDs; any other value matches no run (rather than being an error).
    for column, value in (("workflow_id", workflow_id), ("definition_id", definition_id)):
        if value:
            parsed = _uuid_or_none(value)
            if parsed is None:
                conditions.append("false")
            else:
                where(column + " = {}", parsed)
    if created_after:
        where("created_at >= {}", created_after)
    if created_before:
        where("created_at < {}", created_before)
    if min_total_cost is not None:
        where("total_cost >= {}", min_total_cost)
    if max_total_cost is not None:
        where("total_cost <= {}", max_total_cost)
    clause = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    total: int = await conn.fetchval(f"SELECT count(*) FROM runs {clause}", *args)
    direction = "DESC" if sort.descending else "ASC"
    rows = await conn.fetch(
        f"SELECT {_RUN_COLUMNS} FROM runs {clause}"
        f" ORDER BY {_SORT_COLUMNS[sort.field]} {direction} NULLS LAST, id {direction}"
        f" LIMIT {page.page_size:d} OFFSET {page.offset:d}",
        *args,
    )
    return Page(items=[to_run(r) for r in rows], total=total, request=page)


_STEP_ORDER = "ORDER BY started_at ASC NULLS LAST, position, item_index NULLS FIRST"


async def get_step(conn: Connection, run_id: str, step_id: str) -> RunStep | None:
    row = await conn.fetchrow(
        f"SELECT {_STEP_COLUMNS} FROM run_steps WHERE run_id = $1 AND step_id = $2",
        run_id,
        step_id,
    )
    return to_step(row) if row else None


async def list_steps(conn: Connection, run_id: str) -> list[RunStep]:
    rows = await conn.fetch(
        f"SELECT {_STEP_COLUMNS} FROM run_steps WHERE run_id = $1 {_STEP_ORDER}", run_id
    )
    return [to_step(r) for r in rows]


# The run, its steps and its last event number as of one instant (one statement).
_SNAPSHOT = f"""
SELECT r.event_seq,
       ARRAY(SELECT ROW({_STEP_COLUMNS}) FROM run_steps WHERE run_id = r.id {_STEP_ORDER})
           AS steps,
       {", ".join(f"r.{name}" for name in _RUN_FIELDS)}
FROM runs r WHERE r.id = $1 AND r.project_id = $2
"""


async def snapshot(
    conn: Connection, project_id: uuid.UUID, run_id: str
) -> tuple[Run, list[RunStep], int] | None:
    """The run, its steps and the last sequence number they include; None if the
    project has no such run."""
    row = await conn.fetchrow(_SNAPSHOT, run_id, project_id)
    if row is None:
        return None
    steps = [to_step(dict(zip(_STEP_FIELDS, record, strict=True))) for record in row["steps"]]
    return to_run(row), steps, row["event_seq"]


async def list_events(
    conn: Connection,
    run_id: str,
    *,
    after_sequence: int = 0,
    limit: int = 1000,
    log_lines: bool = False,
    step_id: str | None = None,
) -> list[RunEvent]:
    """Events after ``after_sequence``, oldest first; with ``log_lines``, only those that
    carry a log line (a message)."""
    rows = await conn.fetch(
        f"""
        SELECT {_EVENT_COLUMNS} FROM run_events
        WHERE run_id = $1 AND sequence > $2
          AND (NOT $3 OR message IS NOT NULL)
          AND ($4::text IS NULL OR step_id = $4)
        ORDER BY sequence LIMIT $5
        """,
        run_id,
        after_sequence,
        log_lines,
        step_id,
        limit,
    )
    return [to_event(r) for r in rows]


# -- changing a run ----------------------------------------------------------------------


async def append_events(
    conn: Connection,
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
    last: int = await conn.fetchval(
        "UPDATE runs SET event_seq = event_seq + $2 WHERE id = $1 RETURNING event_seq",
        run_id,
        len(drafts),
    )
    first = last - len(drafts) + 1
    datas = [{**(d.data or {}), "status": status, "progress": progress} for d in drafts]
    created_at: datetime = await conn.fetchval(
        """
        INSERT INTO run_events (run_id, sequence, type, step_id, level, message, data)
        SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                                 $7::jsonb[])
        RETURNING created_at
        """,
        run_id,
        [first + i for i in range(len(drafts))],
        [d.type for d in drafts],
        [d.step_id for d in drafts],
        [d.level for d in drafts],
        [d.message for d in drafts],
        [_dumps(data) for data in datas],
    )
    return [
        RunEvent(run_id, first + i, d.type, d.step_id, d.level, d.message, data, created_at)
        for i, (d, data) in enumerate(zip(drafts, datas, strict=True))
    ]


async def cancel(
    conn: Connection, project_id: uuid.UUID, run_id: str, *, reason: str, cancelled_by: str
) -> tuple[Run, list[RunEvent]] | None:
    """PENDING/RUNNING/PAUSED -> CANCELLED; steps in flight are marked FAILED. None if not
    allowed.

    Call inside a transaction.
    """
    message = f"Cancelled: {reason}"
    row = await conn.fetchrow(
        f"""
        UPDATE runs SET status = 'CANCELLED', error_message = $2, cancelled_by = $3,
                        cancelled_at = now(), updated_at = now(),
                        lease_owner = NULL, lease_expires_at = NULL
        WHERE id = $1 AND project_id = $4 AND status IN ('{PENDING}', '{RUNNING}', '{PAUSED}')
        RETURNING {_RUN_COLUMNS}
        """,
        run_id,
        message,
        cancelled_by,
        project_id,
    )
    if row is None:
        return None
    return await _abandon_steps(
        conn, to_run(row), message, f"Run cancelled by {cancelled_by}: {reason}", "warning"
    )


async def _abandon_steps(
    conn: Connection, run: Run, error: str, line: str, level: str
) -> tuple[Run, list[RunEvent]]:
    """After a run was ended from outside its driver: its steps in flight fail with
    ``error``, and the events say so, the last carrying the log ``line``."""
    abandoned = await conn.fetch(
        f"""
        UPDATE run_steps SET status = '{FAILED}', error_message = $2, completed_at = now()
        WHERE run_id = $1 AND status IN ('{RUNNING}', '{WAITING}')
        RETURNING step_id
        """,
        run.id,
        error,
    )
    written = await append_events(
        conn,
        run.id,
        [
            *(events.step_failed(s["step_id"], error=error) for s in abandoned),
            events.run_status(
                run.status, progress=run.progress, error_message=error, message=line, level=level
            ),
        ],
        status=run.status,
        progress=run.progress,
    )
    return run, written


async def time_out_overdue(conn: Connection, *, limit: int) -> list[tuple[Run, list[RunEvent]]]:
    """Fail up to ``limit`` runs past their deadline that no live worker drives (waiting
    for a worker, paused and given back, or left by a dead worker); a driven run's
    driver times it out itself. Call inside a transaction."""
    rows = await conn.fetch(
        f"""
        WITH overdue AS (
            SELECT id FROM runs
            WHERE deadline_at < now() AND status IN ('{PENDING}', '{RUNNING}', '{PAUSED}')
              AND (lease_owner IS NULL OR lease_expires_at < now())
            ORDER BY deadline_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        )
        UPDATE runs r SET status = '{FAILED}',
                          error_message = format('Run timed out after %s s', r.timeout_seconds),
                          completed_at = now(), updated_at = now(),
                          lease_owner = NULL, lease_expires_at = NULL
        FROM overdue WHERE r.id = overdue.id
        RETURNING {", ".join(f"r.{name}" for name in _RUN_FIELDS)}
        """,
        limit,
    )
    ended = []
    for row in rows:
        run = to_run(row)
        message = run.error_message or "Run timed out"
        ended.append(await _abandon_steps(conn, run, message, message, "error"))
    return ended


async def reset_for_retry(
    conn: Connection, project_id: uuid.UUID, run_id: str
) -> tuple[Run, list[RunEvent]] | None:
    """FAILED/CANCELLED -> PENDING; unfinished steps back to PENDING. None if not allowed.

    Call inside a transaction.
    """
    row = await conn.fetchrow(
        f"""
        UPDATE runs SET status = '{PENDING}', error_message = NULL, completed_at = NULL,
                        cancelled_at = NULL, cancelled_by = NULL, updated_at = now(),
                        enqueued_at = now()
        WHERE id = $1 AND project_id = $2 AND status IN ('{FAILED}', 'CANCELLED')
        RETURNING {_RUN_COLUMNS}
        """,
        run_id,
        project_id,
    )
    if row is None:
        return None
    await conn.execute(
        f"""
        UPDATE run_steps SET status = '{PENDING}', error_message = NULL, completed_at = NULL
        WHERE run_id = $1 AND status <> 'COMPLETED'
          -- The failed items of a fan-out step that collected them stay as they are.
          AND (parent_step_id IS NULL OR parent_step_id NOT IN (
              SELECT step_id FROM run_steps WHERE run_id = $1 AND status = 'COMPLETED'))
        """,
        run_id,
    )
    run = to_run(row)
    written = await append_events(
        conn,
        run_id,
        [
            events.run_status(
                PENDING,
                progress=run.progress,
                message="Run retried: resuming from the first incomplete step",
            ),
        ],
        status=run.status,
        progress=run.progress,
    )
    return run, written


async def pause(
    conn: Connection, project_id: uuid.UUID, run_id: str, *, reason: str, paused_by: str
) -> tuple[Run, list[RunEvent]] | None:
    """PENDING/RUNNING -> PAUSED. None if not allowed. Call inside a transaction.

    The lease stays: the driver, if any, learns of the pause at its next write, lets the
    steps in flight finish, starts nothing new, and releases the run when idle.
    """
    row = await conn.fetchrow(
        f"""
        UPDATE runs SET status = '{PAUSED}', updated_at = now()
        WHERE id = $1 AND project_id = $2 AND status IN ('{PENDING}', '{RUNNING}')
        RETURNING {_RUN_COLUMNS}
        """,
        run_id,
        project_id,
    )
    if row is None:
        return None
    run = to_run(row)
    written = await append_events(
        conn,
        run_id,
        [
            events.run_status(
                PAUSED,
                progress=run.progress,
                message=f"Run paused by {paused_by}: {reason}",
                level="warning",
            )
        ],
        status=run.status,
        progress=run.progress,
    )
    return run, written


async def resume(
    conn: Connection, project_id: uuid.UUID, run_id: str, *, resumed_by: str
) -> tuple[Run, list[RunEvent]] | None:
    """PAUSED -> RUNNING while its driver still holds it (it goes on at its next write),
    else -> PENDING (to be enqueued). None if not allowed. Call inside a transaction."""
    row = await conn.fetchrow(
        f"""
        UPDATE runs SET
            status = CASE WHEN lease_expires_at > now() THEN '{RUNNING}' ELSE '{PENDING}' END,
            lease_owner = CASE WHEN lease_expires_at > now() THEN lease_owner END,
            lease_expires_at = CASE WHEN lease_expires_at > now() THEN lease_expires_at END,
            enqueued_at = now(), updated_at = now()
        WHERE id = $1 AND project_id = $2 AND status = '{PAUSED}'
        RETURNING {_RUN_COLUMNS}
        """,
        run_id,
        project_id,
    )
    if row is None:
        return None
    run = to_run(row)
    written = await append_events(
        conn,
        run_id,
        [
            events.run_status(
                run.status,
                progress=run.progress,
                message=f"Run resumed by {resumed_by}",
                resumed_by=resumed_by,
            )
        ],
        status=run.status,
        progress=run.progress,
    )
    return run, written


_FINISHED = f"('{COMPLETED}', '{FAILED}', '{CANCELLED}')"


async def delete(conn: Connection, project_id: uuid.UUID, run_id: str) -> str | None:
    """Delete a finished run with its steps and events (ON DELETE CASCADE); its status
    before, or None if the project has no such run. An unfinished run stays."""
    row = await conn.fetchrow(
        f"""
        WITH found AS (SELECT id, status FROM runs WHERE id = $1 AND project_id = $2),
        deleted AS (
            DELETE FROM runs r USING found f
            WHERE r.id = f.id AND f.status IN {_FINISHED}
        )
        SELECT status FROM found
        """,
        run_id,
        project_id,
    )
    return None if row is None else str(row["status"])


async def purge_finished(conn: Connection, *, older_than_days: float, limit: int) -> int:
    """Delete up to ``limit`` runs that finished more than ``older_than_days`` ago; how
    many. Oldest first, skipping rows another transaction holds."""
    deleted: int = await conn.fetchval(
        f"""
        WITH old AS (
            SELECT id FROM runs
            WHERE status IN {_FINISHED}
              AND COALESCE(completed_at, cancelled_at)
                  < now() - make_interval(secs => $1 * 86400)
            ORDER BY COALESCE(completed_at, cancelled_at)
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ), gone AS (DELETE FROM runs r USING old WHERE r.id = old.id RETURNING 1)
        SELECT count(*) FROM gone
        """,
        older_than_days,
        limit,
    )
    return deleted


async def signal(
    conn: Connection,
    project_id: uuid.UUID,
    run_id: str,
    name: str,
    payload: Any,
    *,
    created_by: str,
) -> tuple[str, bool, datetime, list[tuple[RunEvent, str]]] | None:
    """Record a signal of an unfinished run: the run's status, whether the signal was a
    repeat (nothing changed), when it was first received, and the events written (with
    the run's workflow id). None for an unknown run. Call inside a transaction.

    A new signal marks the run due (``wake_at``), so a run given back while waiting is
    taken up again; a driver giving it back keeps a mark already there.
    """
    row = await conn.fetchrow(
        "SELECT status, workflow_id FROM runs WHERE id = $1 AND project_id = $2 FOR UPDATE",
        run_id,
        project_id,
    )
    if row is None:
        return None
    status: str = row["status"]
    if status in (COMPLETED, FAILED, CANCELLED):
        # A repeat of a signal the run had is still a repeat (retries stay safe).
        first: datetime | None = await conn.fetchval(
            "SELECT created_at FROM run_signals WHERE run_id = $1 AND name = $2", run_id, name
        )
        return status, first is not None, first or datetime.now(UTC), []
    received: datetime | None = await conn.fetchval(
        """
        INSERT INTO run_signals (run_id, name, payload, created_by)
        VALUES ($1, $2, $3::jsonb, $4)
        ON CONFLICT (run_id, name) DO NOTHING
        RETURNING created_at
        """,
        run_id,
        name,
        _dumps(payload),
        created_by,
    )
    if received is None:
        first = await conn.fetchval(
            "SELECT created_at FROM run_signals WHERE run_id = $1 AND name = $2", run_id, name
        )
        return status, True, first, []
    progress: int = await conn.fetchval(
        "UPDATE runs SET wake_at = now() WHERE id = $1 RETURNING progress", run_id
    )
    written = await append_events(
        conn,
        run_id,
        [events.log_line(f"Signal '{name}' received from {created_by}")],
        status=status,
        progress=progress,
    )
    return status, False, received, [(event, str(row["workflow_id"])) for event in written]
