"""The agent as the services see it. Credentials are deliberately not part of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """How failed agent calls are retried (see ``RetryConfig`` in the contract)."""

    max_retries: int = 3
    initial_delay_ms: int = 1000
    max_delay_ms: int = 30000
    backoff_multiplier: float = 2.0


@dataclass(frozen=True)
class Agent:
    """A registered agent. ``auth_config`` is write-only and never loaded into this."""

    id: uuid.UUID
    name: str
    url: str
    description: str
    auth_type: str
    timeout_ms: int
    retry: RetryPolicy
    status: str
    created_at: datetime
    updated_at: datetime
    protocol: str
    project_id: uuid.UUID


@dataclass(frozen=True)
class AgentSpec:
    """What a client supplies to register an agent."""

    name: str
    url: str
    description: str = ""
    auth_type: str = "none"
    auth_config: dict[str, Any] | None = None
    timeout_ms: int = 30000
    retry: RetryPolicy = RetryPolicy()
    protocol: str = "a2a"


@dataclass(frozen=True)
class AgentChanges:
    """A partial update: ``None`` means "leave unchanged"."""

    url: str | None = None
    description: str | None = None
    auth_type: str | None = None
    auth_config: dict[str, Any] | None = None
    timeout_ms: int | None = None
    max_retries: int | None = None
    initial_delay_ms: int | None = None
    max_delay_ms: int | None = None
    backoff_multiplier: float | None = None
    status: str | None = None
    protocol: str | None = None
