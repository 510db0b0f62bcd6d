"""``baton.v1.ModelPriceService``, and AI usage as the contract shows it on runs, steps
and events: proto <-> domain only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc

from baton.v1 import usage_pb2, usage_pb2_grpc
from baton_server.access.context import caller
from baton_server.rpc.convert import page_fields, page_request, parse_uuid, present, timestamp
from baton_server.usage.model import AiCall, ModelPrice, ModelPriceChanges
from baton_server.usage.service import ModelPriceService

_Context = grpc.aio.ServicerContext[Any, Any]


def price_to_proto(price: ModelPrice) -> usage_pb2.ModelPrice:
    return usage_pb2.ModelPrice(
        id=str(price.id),
        model=price.model,
        input_usd_per_million=price.input_usd_per_million,
        output_usd_per_million=price.output_usd_per_million,
        project_id=str(price.project_id),
        created_at=timestamp(price.created_at),
        updated_at=timestamp(price.updated_at),
    )


def ai_call_to_proto(call: AiCall) -> usage_pb2.AiCall:
    return usage_pb2.AiCall(
        model=call.model,
        operation=call.operation,
        tokens_input=call.tokens_input,
        tokens_output=call.tokens_output,
        cost=call.cost,
        timestamp=timestamp(call.created_at),
        step_id=call.step_id,
        attempt=call.attempt,
        unpriced=call.unpriced,
    )


def models_of(calls: Iterable[AiCall]) -> dict[str, tuple[int, int]]:
    """Input and output tokens by model."""
    models: dict[str, tuple[int, int]] = {}
    for call in calls:
        input_tokens, output_tokens = models.get(call.model, (0, 0))
        models[call.model] = (input_tokens + call.tokens_input, output_tokens + call.tokens_output)
    return models


def token_usage_to_proto(
    input_tokens: int, output_tokens: int, models: Mapping[str, tuple[int, int]]
) -> usage_pb2.TokenUsage:
    return usage_pb2.TokenUsage(
        total=input_tokens + output_tokens,
        input=input_tokens,
        output=output_tokens,
        by_model={
            model: usage_pb2.ModelTokens(input=tokens[0], output=tokens[1])
            for model, tokens in models.items()
        },
    )


def step_usage(calls: Sequence[AiCall]) -> dict[str, Any]:
    """The usage fields of a step (or run) made of ``calls``, as keyword arguments."""
    return {
        "token_usage": token_usage_to_proto(
            sum(c.tokens_input for c in calls),
            sum(c.tokens_output for c in calls),
            models_of(calls),
        ),
        "total_cost": sum(c.cost for c in calls),
        "ai_calls": [ai_call_to_proto(c) for c in calls],
    }


def totals_to_proto(totals: Mapping[str, Any]) -> usage_pb2.UsageTotals:
    """An event's ``usage`` or ``run_usage`` (see baton_server.runs.events)."""
    return usage_pb2.UsageTotals(
        input_tokens=totals.get("input_tokens", 0),
        output_tokens=totals.get("output_tokens", 0),
        cost=totals.get("cost", 0.0),
    )


class ModelPriceServicer(usage_pb2_grpc.ModelPriceServiceServicer):
    """Translates ModelPriceService RPCs to ``ModelPriceService`` use cases."""

    def __init__(self, service: ModelPriceService) -> None:
        self._service = service

    async def CreateModelPrice(
        self, request: usage_pb2.CreateModelPriceRequest, context: _Context
    ) -> usage_pb2.ModelPrice:
        price = await self._service.create(
            caller().project_id,
            request.model,
            request.input_usd_per_million,
            request.output_usd_per_million,
        )
        return price_to_proto(price)

    async def ListModelPrices(
        self, request: usage_pb2.ListModelPricesRequest, context: _Context
    ) -> usage_pb2.ListModelPricesResponse:
        page = await self._service.list_page(caller().project_id, page_request(request))
        return usage_pb2.ListModelPricesResponse(
            items=[price_to_proto(p) for p in page.items], **page_fields(page)
        )

    async def GetModelPrice(
        self, request: usage_pb2.GetModelPriceRequest, context: _Context
    ) -> usage_pb2.ModelPrice:
        price_id = parse_uuid(request.price_id, "price_id")
        return price_to_proto(await self._service.get(caller().project_id, price_id))

    async def UpdateModelPrice(
        self, request: usage_pb2.UpdateModelPriceRequest, context: _Context
    ) -> usage_pb2.ModelPrice:
        changes = ModelPriceChanges(
            input_usd_per_million=present(request, "input_usd_per_million"),
            output_usd_per_million=present(request, "output_usd_per_million"),
        )
        price_id = parse_uuid(request.price_id, "price_id")
        return price_to_proto(await self._service.update(caller().project_id, price_id, changes))

    async def DeleteModelPrice(
        self, request: usage_pb2.DeleteModelPriceRequest, context: _Context
    ) -> usage_pb2.DeleteModelPriceResponse:
        price_id = parse_uuid(request.price_id, "price_id")
        await self._service.delete(caller().project_id, price_id)
        return usage_pb2.DeleteModelPriceResponse(message=f"Model price '{price_id}' deleted")
