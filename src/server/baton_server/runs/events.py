"""Event types of a run's event log, and constructors for the common ones.

Every state change of a run is recorded as an event in the same transaction as the
change; log lines are events of type ``log``.
"""

from __future__ import annotations

from typing import Any

from baton_server.runs.model import TERMINAL_RUN_STATUSES, EventDraft, RunEvent

RUN_STATUS = "run_status"
STEP_STARTED = "step_started"
STEP_COMPLETED = "step_completed"
STEP_FAILED = "step_failed"
STEP_RETRYING = "step_retrying"
LOG = "log"


def log(message: str, *, level: str = "info", step_id: str | None = None) -> EventDraft:
    return EventDraft(type=LOG, step_id=step_id, level=level, message=message)


def run_status(
    status: str, *, progress: int, error_message: str | None = None, output: Any = None
) -> EventDraft:
    data: dict[str, Any] = {"status": status, "progress": progress}
    if error_message is not None:
        data["error_message"] = error_message
    if output is not None:
        data["output"] = output
    return EventDraft(type=RUN_STATUS, data=data)


def is_terminal(event: RunEvent) -> bool:
    """Whether the event ends its run (a ``run_status`` to COMPLETED, FAILED or CANCELLED)."""
    return event.type == RUN_STATUS and (event.data or {}).get("status") in TERMINAL_RUN_STATUSES
