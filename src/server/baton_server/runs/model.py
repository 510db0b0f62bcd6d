"""Runs, steps and events as the services see them."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, SKIPPED, PAUSED, WAITING = (
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "SKIPPED",
    "PAUSED",
    "WAITING",
)
TERMINAL_RUN_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7: 48-bit Unix milliseconds, then random).

    New rows then land at the right edge of the indexes on run ids instead of on random
    pages, which keeps inserts cheap and the write-ahead log small.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    return uuid.UUID(int=value)


def new_run_id() -> str:
    return f"run-{uuid7()}"


def new_step_execution_id() -> str:
    return f"step-exec-{uuid7()}"


@dataclass(frozen=True)
class Run:
    """One execution of a pinned workflow version."""

    id: str
    workflow_id: uuid.UUID
    workflow_name: str
    definition_id: uuid.UUID
    workflow_version: int
    status: str
    input_data: dict[str, Any]
    output: Any
    triggered_by: str
    request_id: str | None
    progress: int
    error_message: str | None
    cancelled_by: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    cancelled_at: datetime | None
    project_id: uuid.UUID
    #: Where the run's end is reported (its signing secret is in ``run_callbacks``).
    callback_url: str | None = None
    #: The run's time limit, and when it runs out.
    timeout_seconds: int | None = None
    deadline_at: datetime | None = None
    #: What the run's AI calls used and cost so far.
    tokens_input: int = 0
    tokens_output: int = 0
    total_cost: float = 0.0

    @property
    def has_usage(self) -> bool:
        """Whether any agent of the run reported usage (its AI calls are worth reading)."""
        return bool(self.tokens_input or self.tokens_output or self.total_cost)


@dataclass(frozen=True)
class RunStep:
    """The state of one step of a run."""

    id: str
    run_id: str
    step_id: str
    agent_name: str
    position: int
    status: str
    attempt: int
    input_data: dict[str, Any] | None
    output_data: Any
    error_message: str | None
    started_at: datetime | None
    completed_at: datetime | None
    #: For one item of a fan-out step: that step's id, and the item's place in its list.
    parent_step_id: str | None = None
    item_index: int | None = None


@dataclass(frozen=True)
class EventDraft:
    """An event about to be appended to a run's event log (its sequence comes later)."""

    type: str
    step_id: str | None = None
    level: str | None = None
    message: str | None = None
    data: dict[str, Any] | None = field(default=None)


@dataclass(frozen=True)
class RunEvent:
    """A persisted event: position ``sequence`` in the run's gap-free event log."""

    run_id: str
    sequence: int
    type: str
    step_id: str | None
    level: str | None
    message: str | None
    data: dict[str, Any] | None
    created_at: datetime
