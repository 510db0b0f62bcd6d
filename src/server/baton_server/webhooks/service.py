"""Webhook use cases; each public method is one transaction."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from baton_server.clock import SYSTEM_CLOCK, Clock
from baton_server.errors import FieldViolation, InvalidArgument, NotFound
from baton_server.paging import Page, PageRequest
from baton_server.runs.store import Callback, Connection
from baton_server.sealing import SecretBox
from baton_server.webhooks import signing, store
from baton_server.webhooks.events import EVENT_TYPES, PING
from baton_server.webhooks.model import Delivery, Webhook, WebhookChanges
from baton_server.webhooks.outbox import envelope
from baton_server.webhooks.targets import check_url

MIN_SECRET_CHARS = 16


def webhook_not_found(webhook_id: uuid.UUID | str) -> NotFound:
    return NotFound(
        f"Webhook '{webhook_id}' not found",
        reason="WEBHOOK_NOT_FOUND",
        metadata={"webhook_id": str(webhook_id)},
    )


def check_events(events: list[str], field: str = "events") -> None:
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise InvalidArgument(
            f"Unknown event type(s): {', '.join(unknown)}",
            reason="INVALID_EVENT_TYPE",
            violations=[
                FieldViolation(f"{field}[{events.index(e)}]", f"unknown event type '{e}'")
                for e in unknown
            ],
            metadata={"events": ",".join(unknown)},
        )


def check_secret(secret: str, field: str) -> None:
    if len(secret) < MIN_SECRET_CHARS:
        raise InvalidArgument(
            f"{field} must have at least {MIN_SECRET_CHARS} characters",
            reason="INVALID_FIELD",
            violations=[FieldViolation(field, f"at least {MIN_SECRET_CHARS} characters")],
        )


class WebhookService:
    """Subscribes endpoints, lists their deliveries, redelivers and pings."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        secrets: SecretBox,
        *,
        allow_private: bool,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._pool = pool
        self._secrets = secrets
        self._allow_private = allow_private
        self._clock = clock

    async def check_target(self, url: str, field: str) -> None:
        await check_url(url, field, allow_private=self._allow_private)

    def seal_secret(self, secret: str) -> str:
        return self._secrets.seal({"secret": secret})

    async def callback(self, url: str, secret: str | None) -> tuple[Callback, str | None]:
        """A run's completion callback, checked and sealed, and its secret if Baton
        generated it."""
        await self.check_target(url, "callback_url")
        generated = None
        if secret:
            check_secret(secret, "callback_secret")
        else:
            secret = generated = signing.generate_secret()
        return Callback(url, self.seal_secret(secret)), generated

    async def create(
        self,
        project_id: uuid.UUID,
        *,
        url: str,
        events: list[str],
        secret: str | None,
        description: str,
        enabled: bool,
    ) -> tuple[Webhook, str | None]:
        """The new webhook, and its secret if Baton generated it."""
        await self.check_target(url, "url")
        check_events(events)
        generated = None
        if secret:
            check_secret(secret, "secret")
        else:
            secret = generated = signing.generate_secret()
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "project_id": project_id,
            "url": url,
            "events": list(dict.fromkeys(events)),
            "secret": self.seal_secret(secret),
            "description": description,
            "enabled": enabled,
        }
        async with self._pool.acquire() as conn:
            return await store.insert(conn, values), generated

    async def get(self, project_id: uuid.UUID, webhook_id: uuid.UUID) -> Webhook:
        async with self._pool.acquire() as conn:
            return await self._require(conn, project_id, webhook_id)

    async def list_page(self, project_id: uuid.UUID, page: PageRequest) -> Page[Webhook]:
        async with self._pool.acquire() as conn:
            return await store.list_page(conn, project_id, page)

    async def update(
        self, project_id: uuid.UUID, webhook_id: uuid.UUID, changes: WebhookChanges
    ) -> Webhook:
        values: dict[str, Any] = {}
        if changes.url is not None:
            await self.check_target(changes.url, "url")
            values["url"] = changes.url
        if changes.events:
            check_events(changes.events)
            values["events"] = list(dict.fromkeys(changes.events))
        if changes.secret is not None:
            check_secret(changes.secret, "secret")
            values["secret"] = self.seal_secret(changes.secret)
        if changes.description is not None:
            values["description"] = changes.description
        if changes.enabled is not None:
            values["enabled"] = changes.enabled
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._require(conn, project_id, webhook_id, for_update=True)
            return await store.update(conn, webhook_id, values) if values else current

    async def delete(self, project_id: uuid.UUID, webhook_id: uuid.UUID) -> None:
        async with self._pool.acquire() as conn:
            if not await store.delete(conn, project_id, webhook_id):
                raise webhook_not_found(webhook_id)

    async def deliveries(
        self, project_id: uuid.UUID, webhook_id: uuid.UUID, status: str | None, page: PageRequest
    ) -> Page[Delivery]:
        async with self._pool.acquire() as conn:
            await self._require(conn, project_id, webhook_id)
            return await store.list_deliveries(conn, webhook_id, status, page)

    async def redeliver(
        self, project_id: uuid.UUID, webhook_id: uuid.UUID, delivery_id: str
    ) -> Delivery:
        parsed = _delivery_uuid(delivery_id)
        async with self._pool.acquire() as conn, conn.transaction():
            await self._require(conn, project_id, webhook_id)
            found = None if parsed is None else await store.reschedule(conn, webhook_id, parsed)
        if found is None:
            raise NotFound(
                f"Delivery '{delivery_id}' not found",
                reason="DELIVERY_NOT_FOUND",
                metadata={"delivery_id": delivery_id},
            )
        return found

    async def ping(self, project_id: uuid.UUID, webhook_id: uuid.UUID) -> Delivery:
        async with self._pool.acquire() as conn, conn.transaction():
            webhook = await self._require(conn, project_id, webhook_id)
            body = envelope(PING, self._clock.now(), {"webhook_id": str(webhook.id)})
            return await store.insert_delivery(conn, project_id, webhook.id, PING, body)

    @staticmethod
    async def _require(
        conn: Connection,
        project_id: uuid.UUID,
        webhook_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> Webhook:
        webhook = await store.get(conn, project_id, webhook_id, for_update=for_update)
        if webhook is None:
            raise webhook_not_found(webhook_id)
        return webhook


def _delivery_uuid(delivery_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(delivery_id.removeprefix("msg_"))
    except ValueError:
        return None
