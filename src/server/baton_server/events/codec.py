"""The JSON form of events on Redis pub/sub: one message per run and transaction.

A transaction that changes a run appends several events at once (a step completes and
the next one starts, with their log lines); they travel as one message, so a watcher's
process decodes, and Redis routes, one message instead of several.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from baton_server.runs.model import RunEvent


def encode(events: Sequence[RunEvent], workflow_id: str) -> bytes:
    """Events of one run written by one transaction (same run, same timestamp)."""
    first = events[0]
    return json.dumps(
        {
            "run_id": first.run_id,
            "workflow_id": workflow_id,
            "created_at": first.created_at.isoformat(),
            "events": [[e.sequence, e.type, e.step_id, e.level, e.message, e.data] for e in events],
        },
        separators=(",", ":"),
    ).encode()


def decode(raw: bytes) -> list[tuple[RunEvent, str]]:
    """The events of a message, in order, each with the id of its run's workflow."""
    fields: dict[str, Any] = json.loads(raw)
    run_id, workflow_id = fields["run_id"], fields["workflow_id"]
    created_at = datetime.fromisoformat(fields["created_at"])
    return [
        (RunEvent(run_id, sequence, type_, step_id, level, message, data, created_at), workflow_id)
        for sequence, type_, step_id, level, message, data in fields["events"]
    ]
