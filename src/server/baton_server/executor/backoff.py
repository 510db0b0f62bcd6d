"""Retry delays: ``initial_delay_ms * backoff_multiplier^n``, capped at ``max_delay_ms``,
with jitter, and never shorter than what the agent asked for (``Retry-After``)."""

from __future__ import annotations

import random
from collections.abc import Callable

from baton_server.agents.model import RetryPolicy

#: The longest ``Retry-After`` honoured; a larger one is taken as this.
MAX_RETRY_AFTER_MS = 300_000


def retry_delay_ms(
    policy: RetryPolicy,
    retry_index: int,
    *,
    retry_after_s: float | None = None,
    uniform: Callable[[], float] = random.random,
) -> int:
    """Delay before retry number ``retry_index`` (0 for the first retry).

    Half of the backoff is fixed and half random ("equal jitter"), so steps that
    failed together against one agent do not all retry at the same instant. An
    agent's ``Retry-After`` is a lower bound.
    """
    backoff = min(
        policy.initial_delay_ms * policy.backoff_multiplier**retry_index, policy.max_delay_ms
    )
    delay = backoff / 2 + uniform() * backoff / 2
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s * 1000, MAX_RETRY_AFTER_MS))
    return int(delay)
