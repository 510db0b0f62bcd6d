"""Model price use cases; each public method is one transaction."""

from __future__ import annotations

import uuid
from dataclasses import asdict

import asyncpg

from baton_server.errors import AlreadyExists, NotFound
from baton_server.paging import Page, PageRequest
from baton_server.usage import store
from baton_server.usage.model import ModelPrice, ModelPriceChanges


def price_not_found(price_id: uuid.UUID) -> NotFound:
    return NotFound(
        f"Model price '{price_id}' not found",
        reason="MODEL_PRICE_NOT_FOUND",
        metadata={"price_id": str(price_id)},
    )


class ModelPriceService:
    """Sets, lists, changes and deletes the prices of models."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self, project_id: uuid.UUID, model: str, input_usd: float, output_usd: float
    ) -> ModelPrice:
        async with self._pool.acquire() as conn:
            price = await store.insert_price(conn, project_id, model, input_usd, output_usd)
        if price is None:
            raise AlreadyExists(
                f"Model '{model}' has a price already",
                reason="MODEL_PRICE_ALREADY_EXISTS",
                metadata={"model": model},
            )
        return price

    async def get(self, project_id: uuid.UUID, price_id: uuid.UUID) -> ModelPrice:
        async with self._pool.acquire() as conn:
            price = await store.get_price(conn, project_id, price_id)
        if price is None:
            raise price_not_found(price_id)
        return price

    async def list_page(self, project_id: uuid.UUID, page: PageRequest) -> Page[ModelPrice]:
        async with self._pool.acquire() as conn:
            return await store.list_prices(conn, project_id, page)

    async def update(
        self, project_id: uuid.UUID, price_id: uuid.UUID, changes: ModelPriceChanges
    ) -> ModelPrice:
        values = {name: value for name, value in asdict(changes).items() if value is not None}
        async with self._pool.acquire() as conn:
            price = await store.update_price(conn, project_id, price_id, values)
        if price is None:
            raise price_not_found(price_id)
        return price

    async def delete(self, project_id: uuid.UUID, price_id: uuid.UUID) -> None:
        async with self._pool.acquire() as conn:
            if not await store.delete_price(conn, project_id, price_id):
                raise price_not_found(price_id)
