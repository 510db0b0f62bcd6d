"""Workflows as the services see them. ``workflow_data`` is the API's JSON shape."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Workflow:
    """A workflow at its current version."""

    id: uuid.UUID
    name: str
    description: str
    version: int
    definition_id: uuid.UUID
    workflow_data: dict[str, Any]
    status: str
    created_at: datetime
    updated_at: datetime
    project_id: uuid.UUID
    #: At most this many runs execute at once (None: no limit).
    max_concurrent_runs: int | None = None


@dataclass(frozen=True)
class WorkflowVersion:
    """One immutable version of a workflow's graph."""

    id: uuid.UUID
    workflow_id: uuid.UUID
    name: str
    version: int
    workflow_data: dict[str, Any]
    status: str
    created_at: datetime


@dataclass(frozen=True)
class WorkflowSpec:
    """What a client supplies to create a workflow."""

    name: str
    description: str
    start_step: str
    steps: dict[str, dict[str, Any]]
    max_concurrent_runs: int | None = None


@dataclass(frozen=True)
class WorkflowChanges:
    """A partial update: ``None`` means "leave unchanged"."""

    name: str | None = None
    description: str | None = None
    #: 0 removes the limit.
    max_concurrent_runs: int | None = None
    start_step: str | None = None
    steps: dict[str, dict[str, Any]] | None = None
    status: str | None = None


def workflow_data(start_step: str, steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The canonical stored form: every step carries its id; empty optionals are dropped."""
    canonical: dict[str, dict[str, Any]] = {}
    for step_id, step in steps.items():
        entry: dict[str, Any] = {
            "id": step.get("id") or step_id,
            "agent_name": step["agent_name"],
            "input_mapping": step.get("input_mapping") or {},
        }
        if step.get("next_step"):
            entry["next_step"] = step["next_step"]
        if step.get("depends_on"):
            entry["depends_on"] = list(step["depends_on"])
        if step.get("timeout_ms"):
            entry["timeout_ms"] = step["timeout_ms"]
        if step.get("wait"):
            entry["wait"] = step["wait"]
        for name in ("for_each", "max_parallel", "on_item_failure"):
            if step.get(name) is not None:
                entry[name] = step[name]
        if step.get("routes"):
            entry["routes"] = [
                {"when": r["when"], "next_step": r["next_step"]} for r in step["routes"]
            ]
        canonical[step_id] = entry
    return {"start_step": start_step, "steps": canonical}
