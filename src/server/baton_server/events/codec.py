"""The JSON form of an event on Redis pub/sub."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from baton_server.runs.model import RunEvent


def encode(event: RunEvent, workflow_id: str) -> bytes:
    return json.dumps(
        {
            "run_id": event.run_id,
            "sequence": event.sequence,
            "type": event.type,
            "step_id": event.step_id,
            "level": event.level,
            "message": event.message,
            "data": event.data,
            "created_at": event.created_at.isoformat(),
            "workflow_id": workflow_id,
        },
        separators=(",", ":"),
    ).encode()


def decode(raw: bytes) -> tuple[RunEvent, str]:
    """The event and the id of its run's workflow."""
    fields: dict[str, Any] = json.loads(raw)
    workflow_id = fields.pop("workflow_id")
    fields["created_at"] = datetime.fromisoformat(fields["created_at"])
    return RunEvent(**fields), workflow_id
