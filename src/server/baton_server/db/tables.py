"""The relational schema, as SQLAlchemy Core tables (no ORM: rows stay plain tuples).

Migrations in ``baton_server/db/migrations`` create exactly this schema; a test checks
that the two agree.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_now = sa.text("now()")

#: The project every installation starts with; data from before projects lives there.
DEFAULT_PROJECT_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
DEFAULT_PROJECT_NAME = "default"
ROLES = ("viewer", "editor", "admin")


def _project_column() -> sa.Column[uuid.UUID]:
    return sa.Column(
        "project_id",
        UUID(as_uuid=True),
        sa.ForeignKey("projects.id"),
        nullable=False,
        server_default=sa.text(f"'{DEFAULT_PROJECT_ID}'::uuid"),
    )


projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    # Bumped with every change to the project's agents; workers' caches compare it.
    sa.Column("agents_revision", sa.BigInteger, nullable=False, server_default="0"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    _project_column(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    # The key's visible start (`bk_` + 8 characters), by which a presented key is found.
    sa.Column("prefix", sa.Text, nullable=False, unique=True),
    # SHA-256 of the whole key: keys are 190-bit random strings, so a fast hash is
    # enough (nothing to brute-force), and the key itself is never stored.
    sa.Column("secret_hash", sa.LargeBinary, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(f"role IN {ROLES!r}", name="role"),
    # Names are unique among a project's live keys; a revoked key's name can be reused.
    sa.Index(
        "uq_api_keys_live_name",
        "project_id",
        "name",
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    ),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("actor_type", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("project_id", UUID(as_uuid=True), nullable=False),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("resource_type", sa.Text, nullable=False),
    sa.Column("resource_id", sa.Text, nullable=False),
    sa.Column("client_address", sa.Text, nullable=False),
    sa.Index("ix_audit_events_created_at", "created_at"),
    sa.Index("ix_audit_events_actor_created_at", "actor", "created_at"),
    sa.Index("ix_audit_events_resource_type_resource_id", "resource_type", "resource_id"),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    _project_column(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("auth_type", sa.Text, nullable=False),
    # Write-only credentials, sealed (Fernet, baton_server.secrets): opened only to call
    # or probe the agent.
    sa.Column("auth_config", sa.Text, nullable=True),
    sa.Column("timeout_ms", sa.Integer, nullable=False),
    sa.Column("max_retries", sa.Integer, nullable=False),
    sa.Column("initial_delay_ms", sa.Integer, nullable=False),
    sa.Column("max_delay_ms", sa.Integer, nullable=False),
    sa.Column("backoff_multiplier", sa.Float, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("protocol", sa.Text, nullable=False, server_default="a2a"),
    sa.CheckConstraint("status IN ('active', 'inactive', 'deleted')", name="status"),
    sa.CheckConstraint("auth_type IN ('none', 'bearer', 'apikey')", name="auth_type"),
    sa.CheckConstraint("protocol IN ('a2a', 'http')", name="protocol"),
    # Names are unique among a project's live agents; a deleted agent's name can be reused.
    sa.Index(
        "uq_agents_live_name",
        "project_id",
        "name",
        unique=True,
        postgresql_where=sa.text("status <> 'deleted'"),
    ),
    sa.Index("ix_agents_created_at", "created_at"),
)

workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    _project_column(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.Text, nullable=False),
    # The current version; the version rows themselves are immutable.
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    # At most this many runs execute at once (NULL: no limit); see executor/worker.py.
    sa.Column("max_concurrent_runs", sa.Integer, nullable=True),
    sa.CheckConstraint("status IN ('active', 'inactive', 'deleted')", name="status"),
    sa.Index(
        "uq_workflows_live_name",
        "project_id",
        "name",
        unique=True,
        postgresql_where=sa.text("status <> 'deleted'"),
    ),
    sa.Index("ix_workflows_created_at", "created_at"),
)

workflow_versions = sa.Table(
    "workflow_versions",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column(
        "workflow_id",
        UUID(as_uuid=True),
        sa.ForeignKey("workflows.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("version", sa.Integer, nullable=False),
    # {"start_step": ..., "steps": {...}}: exactly what the API returns as workflow_data.
    sa.Column("workflow_data", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.UniqueConstraint("workflow_id", "version"),
)

RUN_STATUSES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "PAUSED")
STEP_STATUSES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "SKIPPED", "WAITING")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workflow_id", UUID(as_uuid=True), sa.ForeignKey("workflows.id"), nullable=False),
    sa.Column("workflow_name", sa.Text, nullable=False),
    # The pinned version: editing the workflow never changes a run.
    sa.Column(
        "definition_id",
        UUID(as_uuid=True),
        sa.ForeignKey("workflow_versions.id"),
        nullable=False,
    ),
    sa.Column("workflow_version", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("input_data", JSONB, nullable=False),
    sa.Column("output", JSONB, nullable=True),
    sa.Column("triggered_by", sa.Text, nullable=False),
    sa.Column("request_id", sa.Text, nullable=True),
    sa.Column("progress", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("cancelled_by", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
    # The worker driving the run, and until when; another may take over after that.
    sa.Column("lease_owner", sa.Text, nullable=True),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    # Last time the run was put on the Redis stream (the reconciler re-enqueues).
    sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
    # Last event sequence number used; bumped in the same statement as each change.
    sa.Column("event_seq", sa.BigInteger, nullable=False, server_default="0"),
    # The workflow's project, copied so that every run query filters on the run alone.
    _project_column(),
    # Where the run's end is POSTed (the secret is in run_callbacks).
    sa.Column("callback_url", sa.Text, nullable=True),
    # The run's time limit, and when it runs out (created_at + timeout_seconds).
    sa.Column("timeout_seconds", sa.Integer, nullable=True),
    sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
    # A run given back while its wait steps wait: when the reconciler takes it up again
    # (the earliest wait timeout; 'infinity' without one). NULL for any other run.
    sa.Column("wake_at", sa.DateTime(timezone=True), nullable=True),
    # What the run's AI calls used and cost, bumped with each step end (migration 0011).
    sa.Column("tokens_input", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("tokens_output", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("total_cost", sa.Float, nullable=False, server_default="0"),
    sa.CheckConstraint(_in("status", RUN_STATUSES), name="status"),
    sa.Index("ix_runs_project_id_created_at", "project_id", "created_at"),
    sa.Index("ix_runs_project_id_status_created_at", "project_id", "status", "created_at"),
    sa.Index("ix_runs_workflow_id_created_at", "workflow_id", "created_at"),
    # Retention deletes the runs that finished longest ago first (migration 0008).
    sa.Index(
        "ix_runs_finished_at",
        sa.text("COALESCE(completed_at, cancelled_at)"),
        postgresql_where=sa.text("status IN ('COMPLETED', 'FAILED', 'CANCELLED')"),
    ),
    sa.Index(
        "uq_runs_workflow_id_request_id",
        "workflow_id",
        "request_id",
        unique=True,
        postgresql_where=sa.text("request_id IS NOT NULL"),
    ),
    # Unfinished runs, oldest first (the reconciler's). Not keyed by lease_expires_at:
    # lease updates then stay HOT (migration 0010).
    sa.Index(
        "ix_runs_unfinished",
        "created_at",
        postgresql_where=sa.text("status IN ('PENDING', 'RUNNING')"),
    ),
    # Runs with a time limit that have not finished, by deadline (the reconciler's).
    sa.Index(
        "ix_runs_deadline_at",
        "deadline_at",
        postgresql_where=sa.text(
            "deadline_at IS NOT NULL AND status IN ('PENDING', 'RUNNING', 'PAUSED')"
        ),
    ),
    # A workflow's unfinished runs, oldest first (concurrency limits).
    sa.Index(
        "ix_runs_workflow_id_unfinished",
        "workflow_id",
        "created_at",
        postgresql_where=sa.text("status IN ('PENDING', 'RUNNING', 'PAUSED')"),
    ),
    # Room for updates on the same page (cheap HOT updates); see migration 0003.
    postgresql_with={"fillfactor": 70},
)

run_steps = sa.Table(
    "run_steps",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("step_id", sa.Text, nullable=False),
    sa.Column("agent_name", sa.Text, nullable=False),
    # Topological position in the workflow graph, for a stable display order.
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("input_data", JSONB, nullable=True),
    sa.Column("output_data", JSONB, nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    # One item of a fan-out step: that step's id, and the item's place in its list.
    sa.Column("parent_step_id", sa.Text, nullable=True),
    sa.Column("item_index", sa.Integer, nullable=True),
    sa.UniqueConstraint("run_id", "step_id"),
    sa.CheckConstraint(_in("status", STEP_STATUSES), name="status"),
    postgresql_with={"fillfactor": 70},
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    # Gap-free per run, allocated from runs.event_seq in the changing transaction.
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("step_id", sa.Text, nullable=True),
    sa.Column("level", sa.Text, nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("data", JSONB, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

DELIVERY_STATUSES = ("pending", "succeeded", "failed")

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    _project_column(),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", sa.ARRAY(sa.Text), nullable=False),
    # The signing secret, sealed with the server's secret key (baton_server.sealing).
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Index("ix_webhooks_project_id", "project_id"),
)

run_callbacks = sa.Table(
    "run_callbacks",
    metadata,
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    # The callback's signing secret, sealed like the webhooks'.
    sa.Column("secret", sa.Text, nullable=False),
)

# The outbox: one row per event and endpoint, written in the transaction of the change
# it reports (run events by the trigger of migration 0005, the others by
# baton_emit_event), delivered by the workers.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    _project_column(),
    # NULL for a completion callback (the run has its URL, run_callbacks its secret).
    sa.Column(
        "webhook_id",
        UUID(as_uuid=True),
        sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
        nullable=True,
    ),
    sa.Column("run_id", sa.Text, nullable=True),
    sa.Column("event", sa.Text, nullable=False),
    # The body; NULL for a callback until its first attempt renders the final run.
    sa.Column("payload", JSONB, nullable=True),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    # A worker attempting it holds it until then; a crash mid-attempt lets it go.
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_duration_ms", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("response_excerpt", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(_in("status", DELIVERY_STATUSES), name="status"),
    sa.Index(
        "ix_deliveries_webhook_due",
        "webhook_id",
        "next_attempt_at",
        postgresql_where=sa.text("status = 'pending'"),
    ),
    sa.Index(
        "ix_deliveries_leased",
        "webhook_id",
        postgresql_where=sa.text("status = 'pending' AND lease_expires_at IS NOT NULL"),
    ),
    sa.Index("ix_deliveries_webhook_id_created_at", "webhook_id", "created_at"),
)

SCHEDULE_TYPES = ("cron", "interval", "fixed_time")
INTERVAL_UNITS = ("seconds", "minutes", "hours", "days")
OVERLAP_POLICIES = ("skip", "allow", "cancel_previous")
FIRE_OUTCOMES = ("fired", "triggered", "skipped_overlap", "skipped_inactive", "missed")

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    _project_column(),
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
    # Interval slots are anchor + k * interval: the time the interval was set.
    sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("parameters", JSONB, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("overlap_policy", sa.Text, nullable=False),
    sa.Column("catchup_window_s", sa.Integer, nullable=False),
    # The slot the scheduler claims next; NULL when no slot is left (a past fixed time).
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

# What each slot came to. One row per slot (the partial unique index), so a slot can
# be claimed once; manual triggers are not slots.
schedule_fires = sa.Table(
    "schedule_fires",
    metadata,
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

# Webhook events waiting to be fanned out to their endpoints' deliveries (migration
# 0007): one row per event that has a subscriber, written in the changing transaction.
outbox_events = sa.Table(
    "outbox_events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("project_id", UUID(as_uuid=True), nullable=False),
    sa.Column("run_id", sa.Text, nullable=True),
    # A run event is named by its run and sequence; its body is rendered at fan-out.
    sa.Column("sequence", sa.BigInteger, nullable=True),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("payload", JSONB, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

# Saved tests of one step (WorkflowService.TestStep): never runs (migration 0008).
step_tests = sa.Table(
    "step_tests",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    _project_column(),
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
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Index(
        "ix_step_tests_workflow_id_step_id_created_at", "workflow_id", "step_id", "created_at"
    ),
)

# Signals a run received (RunService.SignalRun): one per name, kept until a wait step
# takes it (migration 0008).
run_signals = sa.Table(
    "run_signals",
    metadata,
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("payload", JSONB, nullable=True),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

# One model call an agent reported for a step attempt (migration 0011).
ai_calls = sa.Table(
    "ai_calls",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("step_id", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("tokens_input", sa.BigInteger, nullable=False),
    sa.Column("tokens_output", sa.BigInteger, nullable=False),
    sa.Column("cost", sa.Float, nullable=False),
    # No cost reported and no price for the model: only the tokens count.
    sa.Column("unpriced", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Index("ix_ai_calls_run_id_id", "run_id", "id"),
)

model_prices = sa.Table(
    "model_prices",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    _project_column(),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("input_usd_per_million", sa.Float, nullable=False),
    sa.Column("output_usd_per_million", sa.Float, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.UniqueConstraint("project_id", "model"),
)


# Statistics (migration 0012): deltas appended by triggers as runs end and AI calls are
# written, folded into hourly rollups by the workers (baton_server.stats.rollups).
def _stats_keys() -> list[sa.Column[uuid.UUID]]:
    return [
        sa.Column("project_id", UUID(as_uuid=True), nullable=False),
        sa.Column("workflow_id", UUID(as_uuid=True), nullable=False),
    ]


def _run_measures() -> list[sa.Column[object]]:
    return [
        sa.Column("runs", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
    ]


def _usage_measures() -> list[sa.Column[object]]:
    return [
        sa.Column("calls", sa.BigInteger, nullable=False),
        sa.Column("tokens_input", sa.BigInteger, nullable=False),
        sa.Column("tokens_output", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
    ]


run_stats_deltas = sa.Table(
    "run_stats_deltas",
    metadata,
    *_stats_keys(),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
    *_run_measures(),
)

run_stats = sa.Table(
    "run_stats",
    metadata,
    *_stats_keys(),
    sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    *_run_measures(),
    sa.PrimaryKeyConstraint("project_id", "workflow_id", "hour", "status"),
)

usage_stats_deltas = sa.Table(
    "usage_stats_deltas",
    metadata,
    *_stats_keys(),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    *_usage_measures(),
)

usage_stats = sa.Table(
    "usage_stats",
    metadata,
    *_stats_keys(),
    sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    *_usage_measures(),
    sa.PrimaryKeyConstraint("project_id", "workflow_id", "hour", "model"),
)
