"""Webhook event types: seed 003's table, plus ``execution.cancelled`` and
``execution.step_failed``, ``execution.paused`` and ``execution.resumed``. Run events
are mapped to them by a trigger (migration 0008's version of it)."""

from __future__ import annotations

EVENT_TYPES = (
    "workflow.created",
    "workflow.updated",
    "workflow.activated",
    "workflow.deactivated",
    "workflow.deleted",
    "workflow.executed",
    "execution.step_completed",
    "execution.step_failed",
    "execution.completed",
    "execution.failed",
    "execution.cancelled",
    "execution.paused",
    "execution.resumed",
    "schedule.created",
    "schedule.updated",
    "schedule.deleted",
    "schedule.triggered",
)
#: Sent by TestWebhook whatever the webhook subscribes to.
PING = "ping"
#: A completion callback (``callback_url``).
CALLBACK = "execution.callback"
