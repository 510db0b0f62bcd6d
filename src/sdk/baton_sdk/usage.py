"""AI usage: what runs, steps and attempts used and cost, and ``client.model_prices``.

Agents report the model calls they make (docs/usage.md); Baton records each as an
:class:`AiCall`, prices it from the agent's own cost or from the project's
:class:`ModelPrice` for the model, and adds them up on the step and the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from baton.v1 import usage_pb2, usage_pb2_grpc
from baton_sdk._convert import optional_datetime, to_datetime
from baton_sdk._transport import Transport
from baton_sdk.paging import AsyncPager, rpc_listing


@dataclass(frozen=True, kw_only=True)
class TokenUsage:
    """Tokens used, in total and by model.

    Attributes:
        total: Input plus output tokens.
        input: Input (prompt) tokens.
        output: Output (completion) tokens.
        by_model: ``{model: (input, output)}``; empty in some answers (see the
            contract's ``Run.ai_calls``).
    """

    total: int = 0
    input: int = 0
    output: int = 0
    by_model: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, message: usage_pb2.TokenUsage) -> TokenUsage:
        """Build from the contract's message."""
        return cls(
            total=message.total,
            input=message.input,
            output=message.output,
            by_model={m: (t.input, t.output) for m, t in sorted(message.by_model.items())},
        )


@dataclass(frozen=True, kw_only=True)
class AiCall:
    """One model call an agent reported.

    Attributes:
        model: The model.
        operation: What it was for: the agent's ``operation``, else the step id.
        tokens_input: Input tokens.
        tokens_output: Output tokens.
        cost: Cost in USD (0 when ``unpriced``).
        timestamp: When the step attempt that made it ended.
        step_id: The step (or fan-out item) that made it.
        attempt: The step attempt that made it, from 1.
        unpriced: No cost reported and no price for the model: only tokens count.
    """

    model: str
    operation: str
    tokens_input: int
    tokens_output: int
    cost: float
    timestamp: datetime | None
    step_id: str
    attempt: int
    unpriced: bool

    @classmethod
    def from_proto(cls, message: usage_pb2.AiCall) -> AiCall:
        """Build from the contract's message."""
        return cls(
            model=message.model,
            operation=message.operation,
            tokens_input=message.tokens_input,
            tokens_output=message.tokens_output,
            cost=message.cost,
            timestamp=optional_datetime(message, "timestamp"),
            step_id=message.step_id,
            attempt=message.attempt,
            unpriced=message.unpriced,
        )


@dataclass(frozen=True, kw_only=True)
class UsageTotals:
    """Tokens and cost added up (one step attempt's, or a run's so far)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    @classmethod
    def from_proto(cls, message: usage_pb2.UsageTotals) -> UsageTotals:
        """Build from the contract's message."""
        return cls(
            input_tokens=message.input_tokens,
            output_tokens=message.output_tokens,
            cost=message.cost,
        )


@dataclass(frozen=True, kw_only=True)
class ModelPrice:
    """What one model costs, in USD per million tokens.

    Attributes:
        id: Server-assigned UUID.
        model: The model, as agents report it.
        input_usd_per_million: USD per million input tokens.
        output_usd_per_million: USD per million output tokens.
        created_at: When it was set.
        updated_at: When it last changed.
        proto: The ``baton.v1.ModelPrice`` message.
    """

    id: str
    model: str
    input_usd_per_million: float
    output_usd_per_million: float
    created_at: datetime
    updated_at: datetime
    proto: usage_pb2.ModelPrice = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: usage_pb2.ModelPrice) -> ModelPrice:
        """Build from the contract's message."""
        return cls(
            id=message.id,
            model=message.model,
            input_usd_per_million=message.input_usd_per_million,
            output_usd_per_million=message.output_usd_per_million,
            created_at=to_datetime(message.created_at),
            updated_at=to_datetime(message.updated_at),
            proto=message,
        )


def usage_fields(message: Any) -> dict[str, Any]:
    """The usage fields of a ``Run`` or ``RunStep`` message, as constructor arguments."""
    return {
        "token_usage": TokenUsage.from_proto(message.token_usage),
        "total_cost": message.total_cost,
        "ai_calls": tuple(AiCall.from_proto(call) for call in message.ai_calls),
    }


class ModelPrices:
    """Prices of models, used for calls reported without a cost. Reached as
    ``client.model_prices``; changing them needs the ``admin`` role."""

    def __init__(self, transport: Transport) -> None:
        """Bind to a client's transport; use ``client.model_prices`` instead."""
        self._transport = transport
        self._stub = usage_pb2_grpc.ModelPriceServiceStub(transport.channel)

    async def create(
        self,
        model: str,
        *,
        input_usd_per_million: float,
        output_usd_per_million: float,
        timeout: float | None = None,
    ) -> ModelPrice:
        """Set the price of ``model``.

        Raises:
            AlreadyExistsError: The model has a price (``MODEL_PRICE_ALREADY_EXISTS``).
        """
        request = usage_pb2.CreateModelPriceRequest(
            model=model,
            input_usd_per_million=input_usd_per_million,
            output_usd_per_million=output_usd_per_million,
        )
        reply = await self._transport.unary(
            self._stub.CreateModelPrice, request, timeout=timeout, idempotent=False
        )
        return ModelPrice.from_proto(reply)

    async def get(self, price_id: str, *, timeout: float | None = None) -> ModelPrice:
        """One price."""
        reply = await self._transport.unary(
            self._stub.GetModelPrice,
            usage_pb2.GetModelPriceRequest(price_id=price_id),
            timeout=timeout,
            idempotent=True,
        )
        return ModelPrice.from_proto(reply)

    def list(
        self, *, page_size: int = 100, limit: int | None = None, timeout: float | None = None
    ) -> AsyncPager[ModelPrice]:
        """Every price of the project, by model."""
        return rpc_listing(
            self._transport,
            self._stub.ListModelPrices,
            lambda number: usage_pb2.ListModelPricesRequest(page=number, page_size=page_size),
            ModelPrice.from_proto,
            lambda price: price.id,
            limit=limit,
            timeout=timeout,
        )

    async def update(
        self,
        price_id: str,
        *,
        input_usd_per_million: float | None = None,
        output_usd_per_million: float | None = None,
        timeout: float | None = None,
    ) -> ModelPrice:
        """Change the prices given; calls that end from then on use them."""
        request = usage_pb2.UpdateModelPriceRequest(price_id=price_id)
        if input_usd_per_million is not None:
            request.input_usd_per_million = input_usd_per_million
        if output_usd_per_million is not None:
            request.output_usd_per_million = output_usd_per_million
        reply = await self._transport.unary(
            self._stub.UpdateModelPrice, request, timeout=timeout, idempotent=True
        )
        return ModelPrice.from_proto(reply)

    async def delete(self, price_id: str, *, timeout: float | None = None) -> None:
        """Delete a price: later calls of the model are unpriced."""
        await self._transport.unary(
            self._stub.DeleteModelPrice,
            usage_pb2.DeleteModelPriceRequest(price_id=price_id),
            timeout=timeout,
            idempotent=True,
        )
