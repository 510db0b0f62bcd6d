"""Step test queries (asyncpg); every function takes the caller's connection."""

from __future__ import annotations

import json
import uuid
from dataclasses import fields
from typing import Any

from baton_server.paging import Page, PageRequest
from baton_server.runs.store import Connection
from baton_server.step_tests.model import StepTest

_FIELDS = [f.name for f in fields(StepTest)]
_COLUMNS = ", ".join(_FIELDS)


def _step_test(row: Any) -> StepTest:
    values = {name: row[name] for name in _FIELDS}
    values["input"] = json.loads(values["input"])
    values["output"] = None if values["output"] is None else json.loads(values["output"])
    return StepTest(**values)


async def current_version(
    conn: Connection, project_id: uuid.UUID, workflow_id: uuid.UUID
) -> tuple[int, dict[str, Any]] | None:
    """The number and ``workflow_data`` of the workflow's current version."""
    row = await conn.fetchrow(
        """
        SELECT w.version, v.workflow_data FROM workflows w
        JOIN workflow_versions v ON v.workflow_id = w.id AND v.version = w.version
        WHERE w.id = $1 AND w.project_id = $2
        """,
        workflow_id,
        project_id,
    )
    return None if row is None else (row["version"], json.loads(row["workflow_data"]))


async def run_outputs(
    conn: Connection, project_id: uuid.UUID, run_id: str
) -> tuple[uuid.UUID, Any, dict[str, Any]] | None:
    """An earlier run's workflow, input, and the outputs of its completed steps."""
    row = await conn.fetchrow(
        """
        SELECT r.workflow_id, r.input_data,
               (SELECT jsonb_object_agg(s.step_id, s.output_data) FROM run_steps s
                WHERE s.run_id = r.id AND s.status = 'COMPLETED') AS outputs
        FROM runs r WHERE r.id = $1 AND r.project_id = $2
        """,
        run_id,
        project_id,
    )
    if row is None:
        return None
    outputs = json.loads(row["outputs"]) if row["outputs"] else {}
    return row["workflow_id"], json.loads(row["input_data"]), outputs


async def insert(conn: Connection, project_id: uuid.UUID, test: StepTest) -> StepTest:
    row = await conn.fetchrow(
        f"""
        INSERT INTO step_tests (id, project_id, workflow_id, workflow_version, step_id,
                                agent_name, input, output, error_message, duration_ms,
                                created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11)
        RETURNING {_COLUMNS}
        """,
        test.id,
        project_id,
        test.workflow_id,
        test.workflow_version,
        test.step_id,
        test.agent_name,
        json.dumps(test.input),
        None if test.output is None else json.dumps(test.output),
        test.error_message,
        test.duration_ms,
        test.created_by,
    )
    return _step_test(row)


async def list_page(
    conn: Connection,
    project_id: uuid.UUID,
    workflow_id: uuid.UUID,
    step_id: str,
    page: PageRequest,
) -> Page[StepTest]:
    where = " WHERE project_id = $1 AND workflow_id = $2 AND step_id = $3"
    args = (project_id, workflow_id, step_id)
    total: int = await conn.fetchval("SELECT count(*) FROM step_tests" + where, *args)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM step_tests"
        + where
        + f" ORDER BY created_at DESC, id LIMIT {page.page_size:d} OFFSET {page.offset:d}",
        *args,
    )
    return Page(items=[_step_test(r) for r in rows], total=total, request=page)
