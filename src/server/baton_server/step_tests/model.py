"""A saved test of one step."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class StepTest:
    """What one test of a step sent, got back, and how long it took."""

    id: uuid.UUID
    workflow_id: uuid.UUID
    workflow_version: int
    step_id: str
    agent_name: str
    input: dict[str, Any]
    output: Any
    error_message: str | None
    duration_ms: int
    created_by: str
    created_at: datetime

    @property
    def status(self) -> str:
        return "failed" if self.error_message is not None else "completed"
