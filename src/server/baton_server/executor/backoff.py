"""Retry delays: ``initial_delay_ms * backoff_multiplier^n``, capped at ``max_delay_ms``."""

from __future__ import annotations

from baton_server.agents.model import RetryPolicy


def retry_delay_ms(policy: RetryPolicy, retry_index: int) -> int:
    """Delay before retry number ``retry_index`` (0 for the first retry)."""
    delay = policy.initial_delay_ms * policy.backoff_multiplier**retry_index
    return int(min(delay, policy.max_delay_ms))
