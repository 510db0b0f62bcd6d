"""Webhooks and completion callbacks, with the outbox they deliver through.

Deliveries of run events are written by a statement-level trigger on ``run_events``,
so every writer of run events (the executor's journal, cancellation, run creation)
records them in its own transaction without knowing about webhooks. Other events
(workflows, pings) call ``baton_emit_event`` in theirs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_now = sa.text("now()")
_DEFAULT_PROJECT_ID = "00000000-0000-0000-0000-000000000001"


def _project_column() -> sa.Column[object]:
    return sa.Column(
        "project_id",
        UUID(as_uuid=True),
        sa.ForeignKey("projects.id"),
        nullable=False,
        server_default=sa.text(f"'{_DEFAULT_PROJECT_ID}'::uuid"),
    )


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


DELIVERY_STATUSES = ("pending", "succeeded", "failed")


def upgrade() -> None:
    op.create_table(
        "webhooks",
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

    op.create_table(
        "run_callbacks",
        sa.Column(
            "run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("secret", sa.Text, nullable=False),
    )

    # The outbox: one row per event and endpoint, written in the transaction of the change
    # it reports (run events by the trigger of migration 0005, the others by
    # baton_emit_event), delivered by the workers.
    op.create_table(
        "deliveries",
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
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=_now
        ),
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
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_deliveries_webhook_id_created_at", "webhook_id", "created_at"),
    )
    op.add_column("runs", sa.Column("callback_url", sa.Text, nullable=True))
    op.execute(_EMIT_EVENT)
    op.execute(_RUN_EVENT_DELIVERIES)
    op.execute(
        "CREATE TRIGGER run_event_deliveries AFTER INSERT ON run_events"
        " REFERENCING NEW TABLE AS new_events"
        " FOR EACH STATEMENT EXECUTE FUNCTION baton_run_event_deliveries()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER run_event_deliveries ON run_events")
    op.execute("DROP FUNCTION baton_run_event_deliveries()")
    op.execute("DROP FUNCTION baton_emit_event(uuid, text, jsonb)")
    for table in ("deliveries", "run_callbacks", "webhooks"):
        op.drop_table(table)
    op.drop_column("runs", "callback_url")


# One delivery per enabled webhook of the project subscribed to the event.
_EMIT_EVENT = """
CREATE FUNCTION baton_emit_event(project uuid, event text, payload jsonb) RETURNS integer
LANGUAGE sql AS $$
    WITH inserted AS (
        INSERT INTO deliveries (id, project_id, webhook_id, event, payload)
        SELECT gen_random_uuid(), project, w.id, event, payload
        FROM webhooks w
        WHERE w.project_id = project AND w.enabled AND event = ANY(w.events)
        RETURNING 1
    )
    SELECT count(*)::integer FROM inserted
$$
"""

# Run events as webhook events: a run's first event is `workflow.executed`, its
# terminal status events `execution.completed|failed|cancelled`; the terminal ones
# also make the run's completion callback. Without webhooks and callbacks, the
# trigger costs two index probes per statement.
_RUN_EVENT_DELIVERIES = """
CREATE FUNCTION baton_run_event_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM webhooks) AND NOT EXISTS (SELECT FROM run_callbacks) THEN
        RETURN NULL;
    END IF;
    WITH mapped AS (
        SELECT e.run_id, e.sequence, e.step_id, e.data, e.created_at,
               r.project_id, r.workflow_id, r.workflow_name, r.callback_url,
               CASE
                   WHEN e.type = 'step_completed' THEN 'execution.step_completed'
                   WHEN e.type = 'step_failed' THEN 'execution.step_failed'
                   WHEN e.type = 'run_status' AND e.sequence = 1 THEN 'workflow.executed'
                   WHEN e.type = 'run_status' THEN
                       CASE e.data->>'status'
                           WHEN 'COMPLETED' THEN 'execution.completed'
                           WHEN 'FAILED' THEN 'execution.failed'
                           WHEN 'CANCELLED' THEN 'execution.cancelled'
                       END
               END AS event
        FROM new_events e JOIN runs r ON r.id = e.run_id
    ), hooked AS (
        INSERT INTO deliveries (id, project_id, webhook_id, run_id, event, payload)
        SELECT gen_random_uuid(), m.project_id, w.id, m.run_id, m.event,
               jsonb_build_object(
                   'type', m.event,
                   'timestamp', m.created_at,
                   'data', jsonb_strip_nulls(jsonb_build_object(
                       'run_id', m.run_id,
                       'workflow_id', m.workflow_id,
                       'workflow_name', m.workflow_name,
                       'step_id', m.step_id,
                       'sequence', m.sequence
                   )) || COALESCE(m.data, '{}'::jsonb)
               )
        FROM mapped m
        JOIN webhooks w
          ON w.project_id = m.project_id AND w.enabled AND m.event = ANY(w.events)
        WHERE m.event IS NOT NULL
    )
    INSERT INTO deliveries (id, project_id, run_id, event, url)
    SELECT gen_random_uuid(), m.project_id, m.run_id, 'execution.callback', m.callback_url
    FROM mapped m JOIN run_callbacks c ON c.run_id = m.run_id
    WHERE m.event IN ('execution.completed', 'execution.failed', 'execution.cancelled');
    RETURN NULL;
END
$$
"""
