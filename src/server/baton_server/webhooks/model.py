"""Webhooks and deliveries as the service sees them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Webhook:
    id: uuid.UUID
    project_id: uuid.UUID
    url: str
    events: list[str]
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Delivery:
    id: uuid.UUID
    webhook_id: uuid.UUID | None
    run_id: str | None
    event: str
    status: str
    attempts: int
    next_attempt_at: datetime
    url: str | None
    last_status_code: int | None
    last_duration_ms: int | None
    last_error: str | None
    response_excerpt: str | None
    created_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True)
class WebhookChanges:
    """The fields an update sets (None: unchanged)."""

    url: str | None = None
    events: list[str] | None = None
    secret: str | None = None
    description: str | None = None
    enabled: bool | None = None
