"""Run control: exact agent-cache invalidation, paused runs, run deletion and retention.

* ``projects.agents_revision`` is bumped in every transaction that creates, changes or
  deletes one of the project's agents. Each executor commit reads it, so a worker knows
  when its cached agents are stale without a round trip of its own.
* Runs may be ``PAUSED``; the run events of pausing and resuming become the webhook
  events ``execution.paused`` and ``execution.resumed``.
* ``ix_runs_finished_at`` lets retention find the runs that finished long ago, oldest
  first, without reading the others.
* Wait steps: run steps may be ``WAITING``; ``run_signals`` keeps the signals runs
  received; ``runs.wake_at`` says when a run given back while waiting is due again.
* ``step_tests`` keeps the results of testing one step on its own (no run).
* Runs may have a time limit (``timeout_seconds``, ``deadline_at``); workflows may
  limit how many of their runs execute at once (``max_concurrent_runs``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import importlib
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_DEFAULT_PROJECT_ID = "00000000-0000-0000-0000-000000000001"
_OLD_STATUSES = "'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED'"
# The name 0002 gave it, after the naming convention prefixed it once more.
_STATUS_CHECK = "ck_runs_ck_runs_status"
_STEP_STATUS_CHECK = "ck_run_steps_ck_run_steps_status"
_OLD_STEP_STATUSES = "'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED'"
_OUTBOX: Any = importlib.import_module("baton_server.db.migrations.versions.0007_outbox_events")

# 0007's function with two more run events mapped: a `run_status` PAUSED is
# `execution.paused`, one that records who resumed the run is `execution.resumed`.
_RUN_EVENT_DELIVERIES: str = _OUTBOX._RUN_EVENT_DELIVERIES.replace(
    "WHEN e.type = 'run_status' AND e.sequence = 1 THEN 'workflow.executed'",
    "WHEN e.type = 'run_status' AND e.sequence = 1 THEN 'workflow.executed'\n"
    "                   WHEN e.type = 'run_status' AND e.data ? 'resumed_by'"
    " THEN 'execution.resumed'",
).replace(
    "WHEN 'CANCELLED' THEN 'execution.cancelled'",
    "WHEN 'CANCELLED' THEN 'execution.cancelled'\n"
    "                           WHEN 'PAUSED' THEN 'execution.paused'",
)
assert "execution.paused" in _RUN_EVENT_DELIVERIES
assert "execution.resumed" in _RUN_EVENT_DELIVERIES


def upgrade() -> None:
    op.add_column(
        "projects",
        sa.Column("agents_revision", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.drop_constraint(op.f(_STATUS_CHECK), "runs")
    op.create_check_constraint(
        op.f(_STATUS_CHECK), "runs", f"status IN ({_OLD_STATUSES}, 'PAUSED')"
    )
    op.create_index(
        "ix_runs_finished_at",
        "runs",
        [sa.text("COALESCE(completed_at, cancelled_at)")],
        postgresql_where=sa.text("status IN ('COMPLETED', 'FAILED', 'CANCELLED')"),
    )
    op.execute(_RUN_EVENT_DELIVERIES)
    op.add_column("workflows", sa.Column("max_concurrent_runs", sa.Integer, nullable=True))
    op.add_column("runs", sa.Column("timeout_seconds", sa.Integer, nullable=True))
    op.add_column("runs", sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_runs_deadline_at",
        "runs",
        ["deadline_at"],
        postgresql_where=sa.text(
            "deadline_at IS NOT NULL AND status IN ('PENDING', 'RUNNING', 'PAUSED')"
        ),
    )
    op.create_index(
        "ix_runs_workflow_id_unfinished",
        "runs",
        ["workflow_id", "created_at"],
        postgresql_where=sa.text("status IN ('PENDING', 'RUNNING', 'PAUSED')"),
    )

    op.create_table(
        "step_tests",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "project_id",
            UUID(as_uuid=True),
            sa.ForeignKey("projects.id"),
            nullable=False,
            server_default=sa.text(f"'{_DEFAULT_PROJECT_ID}'::uuid"),
        ),
        sa.Column(
            "workflow_id",
            UUID(as_uuid=True),
            sa.ForeignKey("workflows.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("workflow_version", sa.Integer, nullable=False),
        sa.Column("step_id", sa.Text, nullable=False),
        sa.Column("agent_name", sa.Text, nullable=False),
        sa.Column("input", JSONB, nullable=False),
        sa.Column("output", JSONB, nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    op.create_index(
        "ix_step_tests_workflow_id_step_id_created_at",
        "step_tests",
        ["workflow_id", "step_id", "created_at"],
    )
    op.drop_constraint(op.f(_STEP_STATUS_CHECK), "run_steps")
    op.create_check_constraint(
        op.f(_STEP_STATUS_CHECK), "run_steps", f"status IN ({_OLD_STEP_STATUSES}, 'WAITING')"
    )
    op.add_column("runs", sa.Column("wake_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "run_signals",
        sa.Column(
            "run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("payload", JSONB, nullable=True),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )


def downgrade() -> None:
    op.drop_table("run_signals")
    op.drop_column("runs", "wake_at")
    op.execute("UPDATE run_steps SET status = 'PENDING' WHERE status = 'WAITING'")
    op.drop_constraint(op.f(_STEP_STATUS_CHECK), "run_steps")
    op.create_check_constraint(
        op.f(_STEP_STATUS_CHECK), "run_steps", f"status IN ({_OLD_STEP_STATUSES})"
    )
    op.drop_table("step_tests")
    op.drop_index("ix_runs_workflow_id_unfinished", table_name="runs")
    op.drop_index("ix_runs_deadline_at", table_name="runs")
    op.drop_column("runs", "deadline_at")
    op.drop_column("runs", "timeout_seconds")
    op.drop_column("workflows", "max_concurrent_runs")
    op.execute(_OUTBOX._RUN_EVENT_DELIVERIES)
    op.drop_index("ix_runs_finished_at", table_name="runs")
    op.execute("UPDATE runs SET status = 'PENDING' WHERE status = 'PAUSED'")
    op.drop_constraint(op.f(_STATUS_CHECK), "runs")
    op.create_check_constraint(op.f(_STATUS_CHECK), "runs", f"status IN ({_OLD_STATUSES})")
    op.drop_column("projects", "agents_revision")
