"""Event types of a run's event log, and constructors for them.

Every state change of a run is recorded as an event in the same transaction as the
change. An event may carry a log line (``level`` and ``message``): the run's log is the
events that do. So a step start is one event that is also the log line "Step 'x'
attempt 1 started", not two. The contract's ``log`` type, a line and nothing else, is
for what changes no state of the run itself (a paused run given back by its worker).
"""

from __future__ import annotations

from typing import Any

from baton_server.runs.model import TERMINAL_RUN_STATUSES, EventDraft, RunEvent
from baton_server.usage.model import UsageTotals

RUN_STATUS = "run_status"
STEP_STARTED = "step_started"
STEP_COMPLETED = "step_completed"
STEP_FAILED = "step_failed"
STEP_RETRYING = "step_retrying"
STEP_SKIPPED = "step_skipped"
STEP_WAITING = "step_waiting"
LOG = "log"


def run_status(
    status: str,
    *,
    progress: int,
    error_message: str | None = None,
    output: Any = None,
    message: str | None = None,
    level: str = "info",
    resumed_by: str | None = None,
) -> EventDraft:
    data: dict[str, Any] = {"status": status, "progress": progress}
    if resumed_by is not None:
        # Marks the resumption of a paused run (webhook event `execution.resumed`).
        data["resumed_by"] = resumed_by
    if error_message is not None:
        data["error_message"] = error_message
    if output is not None:
        data["output"] = output
    return EventDraft(type=RUN_STATUS, level=level if message else None, message=message, data=data)


def step_started(step_id: str, *, attempt: int, agent_name: str) -> EventDraft:
    return EventDraft(
        type=STEP_STARTED,
        step_id=step_id,
        level="info",
        message=f"Step '{step_id}' attempt {attempt} started (agent '{agent_name}')",
        data={"attempt": attempt, "agent_name": agent_name},
    )


def _with_usage(data: dict[str, Any], usage: UsageTotals | None) -> dict[str, Any]:
    """``data`` plus what the attempt's AI calls used (the journal adds the run's totals
    to every event that has it)."""
    return data if usage is None else {**data, "usage": usage.as_dict()}


def step_completed(
    step_id: str, *, attempt: int, output: Any, usage: UsageTotals | None = None
) -> EventDraft:
    return EventDraft(
        type=STEP_COMPLETED,
        step_id=step_id,
        level="info",
        message=f"Step '{step_id}' completed",
        data=_with_usage({"attempt": attempt, "output": output}, usage),
    )


def step_failed(
    step_id: str,
    *,
    error: str,
    attempt: int | None = None,
    usage: UsageTotals | None = None,
) -> EventDraft:
    """A step failed the run (a log line); without ``attempt``, a step abandoned by a
    cancellation (no line: the cancellation has its own)."""
    if attempt is None:
        return EventDraft(type=STEP_FAILED, step_id=step_id, data={"error": error})
    return EventDraft(
        type=STEP_FAILED,
        step_id=step_id,
        level="error",
        message=f"Step '{step_id}' failed: {error}",
        data=_with_usage({"attempt": attempt, "error": error}, usage),
    )


def step_retrying(
    step_id: str, *, attempt: int, delay_ms: int, error: str, usage: UsageTotals | None = None
) -> EventDraft:
    return EventDraft(
        type=STEP_RETRYING,
        step_id=step_id,
        level="warning",
        message=f"Step '{step_id}' attempt {attempt} failed: {error}; retrying in {delay_ms} ms",
        data=_with_usage({"attempt": attempt, "delay_ms": delay_ms, "error": error}, usage),
    )


def step_skipped(step_id: str) -> EventDraft:
    return EventDraft(
        type=STEP_SKIPPED,
        step_id=step_id,
        level="info",
        message=f"Step '{step_id}' skipped: no branch leading to it was taken",
    )


def step_waiting(step_id: str, wait: dict[str, Any] | None) -> EventDraft:
    wait = wait or {}
    timeout = wait.get("timeout_seconds")
    limit = f" (at most {timeout} s)" if timeout else ""
    return EventDraft(
        type=STEP_WAITING,
        step_id=step_id,
        level="info",
        message=f"Step '{step_id}' waiting for signal '{wait.get('signal')}'{limit}",
        data={"signal": wait.get("signal"), "attempt": 1},
    )


def log_line(message: str, *, level: str = "info", step_id: str | None = None) -> EventDraft:
    """A line of the run's log that records no state change of its own."""
    return EventDraft(type=LOG, step_id=step_id, level=level, message=message)


def is_terminal(event: RunEvent) -> bool:
    """Whether the event ends its run (a ``run_status`` to COMPLETED, FAILED or CANCELLED)."""
    return event.type == RUN_STATUS and (event.data or {}).get("status") in TERMINAL_RUN_STATUSES
