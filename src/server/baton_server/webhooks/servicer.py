"""``baton.v1.WebhookService``: proto <-> domain only; the service does the work."""

from __future__ import annotations

from typing import Any

import grpc

from baton.v1 import webhooks_pb2, webhooks_pb2_grpc
from baton_server.access.context import caller
from baton_server.rpc.convert import page_fields, page_request, parse_uuid, present, timestamp
from baton_server.webhooks.delivery import message_id
from baton_server.webhooks.model import Delivery, Webhook, WebhookChanges
from baton_server.webhooks.service import WebhookService

_Context = grpc.aio.ServicerContext[Any, Any]
_Status = webhooks_pb2.Delivery.Status


def webhook_to_proto(webhook: Webhook, secret: str | None = None) -> webhooks_pb2.Webhook:
    return webhooks_pb2.Webhook(
        id=str(webhook.id),
        url=webhook.url,
        events=webhook.events,
        secret=secret or "",
        description=webhook.description,
        enabled=webhook.enabled,
        created_at=timestamp(webhook.created_at),
        updated_at=timestamp(webhook.updated_at),
        project_id=str(webhook.project_id),
    )


def delivery_to_proto(delivery: Delivery) -> webhooks_pb2.Delivery:
    message = webhooks_pb2.Delivery(
        id=message_id(delivery.id),
        webhook_id=str(delivery.webhook_id or ""),
        event=delivery.event,
        status=_Status.Value(delivery.status),
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code or 0,
        last_duration_ms=delivery.last_duration_ms or 0,
        last_error=delivery.last_error or "",
        response_excerpt=delivery.response_excerpt or "",
        created_at=timestamp(delivery.created_at),
        run_id=delivery.run_id or "",
        url=delivery.url or "",
    )
    if delivery.status == "pending":
        message.next_attempt_at.CopyFrom(timestamp(delivery.next_attempt_at))
    if delivery.delivered_at:
        message.delivered_at.CopyFrom(timestamp(delivery.delivered_at))
    return message


class WebhookServicer(webhooks_pb2_grpc.WebhookServiceServicer):
    """Translates WebhookService RPCs to ``WebhookService`` use cases."""

    def __init__(self, service: WebhookService) -> None:
        self._service = service

    async def CreateWebhook(
        self, request: webhooks_pb2.CreateWebhookRequest, context: _Context
    ) -> webhooks_pb2.Webhook:
        webhook, generated = await self._service.create(
            caller().project_id,
            url=request.url,
            events=list(request.events),
            secret=request.secret or None,
            description=request.description,
            enabled=request.enabled if request.HasField("enabled") else True,
        )
        return webhook_to_proto(webhook, generated)

    async def ListWebhooks(
        self, request: webhooks_pb2.ListWebhooksRequest, context: _Context
    ) -> webhooks_pb2.ListWebhooksResponse:
        page = await self._service.list_page(caller().project_id, page_request(request))
        return webhooks_pb2.ListWebhooksResponse(
            items=[webhook_to_proto(w) for w in page.items], **page_fields(page)
        )

    async def GetWebhook(
        self, request: webhooks_pb2.GetWebhookRequest, context: _Context
    ) -> webhooks_pb2.Webhook:
        webhook = await self._service.get(
            caller().project_id, parse_uuid(request.webhook_id, "webhook_id")
        )
        return webhook_to_proto(webhook)

    async def UpdateWebhook(
        self, request: webhooks_pb2.UpdateWebhookRequest, context: _Context
    ) -> webhooks_pb2.Webhook:
        changes = WebhookChanges(
            url=present(request, "url"),
            events=list(request.events) or None,
            secret=present(request, "secret"),
            description=present(request, "description"),
            enabled=present(request, "enabled"),
        )
        webhook = await self._service.update(
            caller().project_id, parse_uuid(request.webhook_id, "webhook_id"), changes
        )
        return webhook_to_proto(webhook)

    async def DeleteWebhook(
        self, request: webhooks_pb2.DeleteWebhookRequest, context: _Context
    ) -> webhooks_pb2.DeleteWebhookResponse:
        await self._service.delete(
            caller().project_id, parse_uuid(request.webhook_id, "webhook_id")
        )
        return webhooks_pb2.DeleteWebhookResponse(
            message=f"Webhook '{request.webhook_id}' deleted successfully"
        )

    async def ListDeliveries(
        self, request: webhooks_pb2.ListDeliveriesRequest, context: _Context
    ) -> webhooks_pb2.ListDeliveriesResponse:
        page = await self._service.deliveries(
            caller().project_id,
            parse_uuid(request.webhook_id, "webhook_id"),
            _Status.Name(request.status) if request.status else None,
            page_request(request),
        )
        return webhooks_pb2.ListDeliveriesResponse(
            items=[delivery_to_proto(d) for d in page.items], **page_fields(page)
        )

    async def Redeliver(
        self, request: webhooks_pb2.RedeliverRequest, context: _Context
    ) -> webhooks_pb2.Delivery:
        delivery = await self._service.redeliver(
            caller().project_id,
            parse_uuid(request.webhook_id, "webhook_id"),
            request.delivery_id,
        )
        return delivery_to_proto(delivery)

    async def TestWebhook(
        self, request: webhooks_pb2.TestWebhookRequest, context: _Context
    ) -> webhooks_pb2.Delivery:
        delivery = await self._service.ping(
            caller().project_id, parse_uuid(request.webhook_id, "webhook_id")
        )
        return delivery_to_proto(delivery)
