"""Turning reported usage into priced AI calls."""

from __future__ import annotations

from collections.abc import Mapping

from baton_server.usage.model import AiCallDraft, ModelPrice
from baton_server.usage.reported import ReportedUsage


def priced_calls(
    step_id: str,
    attempt: int,
    usage: list[ReportedUsage],
    prices: Mapping[str, ModelPrice],
) -> tuple[AiCallDraft, ...]:
    """The step attempt's calls, each costed by the agent's ``cost_usd``, else by its
    model's price, else 0 and marked unpriced."""
    calls = []
    for entry in usage:
        price = prices.get(entry.model)
        if entry.cost_usd is not None:
            cost, unpriced = entry.cost_usd, False
        elif price is not None:
            cost, unpriced = price.cost(entry.input_tokens, entry.output_tokens), False
        else:
            cost, unpriced = 0.0, True
        calls.append(
            AiCallDraft(
                step_id=step_id,
                attempt=attempt,
                model=entry.model,
                operation=entry.operation or step_id,
                tokens_input=entry.input_tokens,
                tokens_output=entry.output_tokens,
                cost=cost,
                unpriced=unpriced,
            )
        )
    return tuple(calls)
