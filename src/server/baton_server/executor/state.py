"""The driver's view of one step of its run (a step of the graph, or an item)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class StepState:
    """One run step as read with the run's lease, then kept current by its driver."""

    step_id: str
    agent_name: str
    status: str
    attempt: int
    output: Any = None
    #: When the current attempt started (Unix time); a wait step's timeout counts from it.
    started_at: float | None = None
    #: For one item of a fan-out step: that step's id, and the item's place in its list.
    parent_step_id: str | None = None
    item_index: int | None = None
    #: Why it failed (kept for a failed item whose fan-out collects failures).
    error: str | None = None
