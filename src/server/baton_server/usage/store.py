"""Model price and AI call queries, in plain SQL on asyncpg (the caller's connection)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from baton_server.paging import Page, PageRequest
from baton_server.runs.store import Connection
from baton_server.usage.model import AiCall, ModelPrice

_PRICE_COLUMNS = (
    "id, project_id, model, input_usd_per_million, output_usd_per_million, created_at, updated_at"
)
_CALL_COLUMNS = (
    "run_id, step_id, attempt, model, operation, tokens_input, tokens_output, cost, unpriced,"
    " created_at"
)


def _price(row: asyncpg.Record) -> ModelPrice:
    return ModelPrice(**dict(row))


async def insert_price(
    conn: Connection, project_id: uuid.UUID, model: str, input_usd: float, output_usd: float
) -> ModelPrice | None:
    """The new price; None if the model has one already."""
    row = await conn.fetchrow(
        "INSERT INTO model_prices (id, project_id, model, input_usd_per_million,"
        " output_usd_per_million) VALUES ($1, $2, $3, $4, $5)"
        f" ON CONFLICT (project_id, model) DO NOTHING RETURNING {_PRICE_COLUMNS}",
        uuid.uuid4(),
        project_id,
        model,
        input_usd,
        output_usd,
    )
    return _price(row) if row else None


async def get_price(
    conn: Connection, project_id: uuid.UUID, price_id: uuid.UUID
) -> ModelPrice | None:
    row = await conn.fetchrow(
        f"SELECT {_PRICE_COLUMNS} FROM model_prices WHERE id = $1 AND project_id = $2",
        price_id,
        project_id,
    )
    return _price(row) if row else None


async def update_price(
    conn: Connection, project_id: uuid.UUID, price_id: uuid.UUID, values: Mapping[str, Any]
) -> ModelPrice | None:
    assignments = "".join(f"{name} = ${i}, " for i, name in enumerate(values, start=3))
    row = await conn.fetchrow(
        f"UPDATE model_prices SET {assignments}updated_at = now()"
        f" WHERE id = $1 AND project_id = $2 RETURNING {_PRICE_COLUMNS}",
        price_id,
        project_id,
        *values.values(),
    )
    return _price(row) if row else None


async def delete_price(conn: Connection, project_id: uuid.UUID, price_id: uuid.UUID) -> bool:
    done: str = await conn.execute(
        "DELETE FROM model_prices WHERE id = $1 AND project_id = $2", price_id, project_id
    )
    return done != "DELETE 0"


async def list_prices(
    conn: Connection, project_id: uuid.UUID, page: PageRequest
) -> Page[ModelPrice]:
    total: int = await conn.fetchval(
        "SELECT count(*) FROM model_prices WHERE project_id = $1", project_id
    )
    rows = await conn.fetch(
        f"SELECT {_PRICE_COLUMNS} FROM model_prices WHERE project_id = $1"
        f" ORDER BY model LIMIT {page.page_size:d} OFFSET {page.offset:d}",
        project_id,
    )
    return Page(items=[_price(r) for r in rows], total=total, request=page)


async def prices_by_model(conn: Connection, project_id: uuid.UUID) -> dict[str, ModelPrice]:
    rows = await conn.fetch(
        f"SELECT {_PRICE_COLUMNS} FROM model_prices WHERE project_id = $1", project_id
    )
    return {row["model"]: _price(row) for row in rows}


async def calls_of_runs(conn: Connection, run_ids: Sequence[str]) -> dict[str, list[AiCall]]:
    """The AI calls of each of the runs, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_CALL_COLUMNS} FROM ai_calls WHERE run_id = ANY($1::text[]) ORDER BY run_id, id",
        list(run_ids),
    )
    calls: dict[str, list[AiCall]] = {run_id: [] for run_id in run_ids}
    for row in rows:
        calls[row["run_id"]].append(AiCall(**dict(row)))
    return calls


async def models_of_runs(
    conn: Connection, run_ids: Sequence[str]
) -> dict[str, dict[str, tuple[int, int]]]:
    """Each run's input and output tokens by model."""
    rows = await conn.fetch(
        "SELECT run_id, model, sum(tokens_input)::bigint AS input,"
        " sum(tokens_output)::bigint AS output"
        " FROM ai_calls WHERE run_id = ANY($1::text[]) GROUP BY run_id, model",
        list(run_ids),
    )
    models: dict[str, dict[str, tuple[int, int]]] = {run_id: {} for run_id in run_ids}
    for row in rows:
        models[row["run_id"]][row["model"]] = (row["input"], row["output"])
    return models
