"""Model calls, prices and totals as the services see them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ModelPrice:
    """What one model costs, in USD per million tokens."""

    id: uuid.UUID
    project_id: uuid.UUID
    model: str
    input_usd_per_million: float
    output_usd_per_million: float
    created_at: datetime
    updated_at: datetime

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_usd_per_million + output_tokens * self.output_usd_per_million
        ) / 1_000_000


@dataclass(frozen=True)
class ModelPriceChanges:
    """The fields an update sets; None leaves a field as it is."""

    input_usd_per_million: float | None = None
    output_usd_per_million: float | None = None


@dataclass(frozen=True)
class AiCallDraft:
    """A priced model call of one step attempt, about to be written with its end."""

    step_id: str
    attempt: int
    model: str
    operation: str
    tokens_input: int
    tokens_output: int
    cost: float
    unpriced: bool


@dataclass(frozen=True)
class AiCall:
    """A recorded model call."""

    run_id: str
    step_id: str
    attempt: int
    model: str
    operation: str
    tokens_input: int
    tokens_output: int
    cost: float
    unpriced: bool
    created_at: datetime


@dataclass(frozen=True)
class UsageTotals:
    """Tokens and cost added up."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    @classmethod
    def of(cls, calls: Sequence[AiCallDraft] | Sequence[AiCall]) -> UsageTotals:
        return cls(
            input_tokens=sum(c.tokens_input for c in calls),
            output_tokens=sum(c.tokens_output for c in calls),
            cost=sum(c.cost for c in calls),
        )

    def as_dict(self) -> dict[str, int | float]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
        }
