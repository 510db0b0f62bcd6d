"""Schedules and what each of their slots came to.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_now = sa.text("now()")
_DEFAULT_PROJECT_ID = "00000000-0000-0000-0000-000000000001"
SCHEDULE_TYPES = ("cron", "interval", "fixed_time")
OVERLAP_POLICIES = ("skip", "allow", "cancel_previous")
FIRE_OUTCOMES = ("fired", "triggered", "skipped_overlap", "skipped_inactive", "missed")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "schedules",
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
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("schedule_type", sa.Text, nullable=False),
        sa.Column("cron_expression", sa.Text, nullable=True),
        sa.Column("interval_value", sa.Integer, nullable=True),
        sa.Column("interval_unit", sa.Text, nullable=True),
        sa.Column("execution_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("parameters", JSONB, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("overlap_policy", sa.Text, nullable=False),
        sa.Column("catchup_window_s", sa.Integer, nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="SET NULL")),
        sa.Column("last_slot_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("missed_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.CheckConstraint(_in("schedule_type", SCHEDULE_TYPES), name="schedule_type"),
        sa.CheckConstraint(_in("overlap_policy", OVERLAP_POLICIES), name="overlap_policy"),
        sa.Index("ix_schedules_project_id_created_at", "project_id", "created_at"),
        sa.Index("ix_schedules_workflow_id", "workflow_id"),
        sa.Index("ix_schedules_due", "next_fire_at", postgresql_where=sa.text("enabled")),
    )
    op.create_table(
        "schedule_fires",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "schedule_id",
            UUID(as_uuid=True),
            sa.ForeignKey("schedules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("run_id", sa.Text, nullable=True),
        sa.Column("cancelled_run_id", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("missed_count", sa.Integer, nullable=True),
        sa.Column("missed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.CheckConstraint(_in("outcome", FIRE_OUTCOMES), name="outcome"),
        sa.Index("ix_schedule_fires_schedule_id_id", "schedule_id", "id"),
        sa.Index(
            "ix_schedule_fires_slot",
            "schedule_id",
            "scheduled_for",
            unique=True,
            postgresql_where=sa.text("outcome <> 'triggered'"),
        ),
    )


def downgrade() -> None:
    op.drop_table("schedule_fires")
    op.drop_table("schedules")
