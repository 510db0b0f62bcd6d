"""Webhook events are queued once per event and fanned out to endpoints by the deliverers.

Migration 0005 wrote one delivery per event and subscribed endpoint inside the changing
transaction: with 10 endpoints on every run event, a run's commits wrote 50 rows. Now
they write one small ``outbox_events`` row per event that has a subscriber (a run event
by its run and sequence: its body is rendered later) and notify the deliverers
(``NOTIFY baton_outbox``), which turn each event into its deliveries in one statement of
their own, off the executor's path. Completion callbacks (one per run) are
still written directly.

The deliverers' claim probes each webhook's due deliveries (two partial indexes)
instead of ranking every pending delivery, so it costs the same with a backlog.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("project_id", UUID(as_uuid=True), nullable=False),
        sa.Column("run_id", sa.Text, nullable=True),
        sa.Column("sequence", sa.BigInteger, nullable=True),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    op.execute(_EMIT_EVENT)
    op.execute(_RUN_EVENT_DELIVERIES)
    # The claim probes each webhook's due deliveries and counts its leased ones.
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.create_index(
        "ix_deliveries_webhook_due",
        "deliveries",
        ["webhook_id", "next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_deliveries_leased",
        "deliveries",
        ["webhook_id"],
        postgresql_where=sa.text("status = 'pending' AND lease_expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_leased", table_name="deliveries")
    op.drop_index("ix_deliveries_webhook_due", table_name="deliveries")
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    # 0005's functions, as that migration wrote them (events still queued are lost).
    webhooks = importlib.import_module("baton_server.db.migrations.versions.0005_webhooks")
    for function in (webhooks._EMIT_EVENT, webhooks._RUN_EVENT_DELIVERIES):
        op.execute(function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    op.drop_table("outbox_events")


# One queued event when any enabled webhook of the project subscribes to it; returns how
# many webhooks do.
_EMIT_EVENT = """
CREATE OR REPLACE FUNCTION baton_emit_event(project uuid, event text, payload jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    subscribed integer;
BEGIN
    SELECT count(*) INTO subscribed FROM webhooks w
    WHERE w.project_id = project AND w.enabled AND event = ANY(w.events);
    IF subscribed > 0 THEN
        INSERT INTO outbox_events (project_id, event, payload) VALUES (project, event, payload);
        PERFORM pg_notify('baton_outbox', '');
    END IF;
    RETURN subscribed;
END
$$
"""

# Run events as webhook events: a run's first event is `workflow.executed`, its
# terminal status events `execution.completed|failed|cancelled`; the terminal ones
# also make the run's completion callback. Without webhooks and callbacks, the
# trigger costs two index probes per statement.
_RUN_EVENT_DELIVERIES = """
CREATE OR REPLACE FUNCTION baton_run_event_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    queued integer;
BEGIN
    IF NOT EXISTS (SELECT FROM webhooks) AND NOT EXISTS (SELECT FROM run_callbacks) THEN
        RETURN NULL;
    END IF;
    WITH mapped AS (
        SELECT e.run_id, e.sequence, r.project_id, r.callback_url,
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
    ), events AS (
        INSERT INTO outbox_events (project_id, run_id, sequence, event)
        SELECT m.project_id, m.run_id, m.sequence, m.event
        FROM mapped m
        WHERE m.event IS NOT NULL AND EXISTS (
            SELECT FROM webhooks w
            WHERE w.project_id = m.project_id AND w.enabled AND m.event = ANY(w.events)
        )
        RETURNING 1
    ), callbacks AS (
        INSERT INTO deliveries (id, project_id, run_id, event, url)
        SELECT gen_random_uuid(), m.project_id, m.run_id, 'execution.callback', m.callback_url
        FROM mapped m JOIN run_callbacks c ON c.run_id = m.run_id
        WHERE m.event IN ('execution.completed', 'execution.failed', 'execution.cancelled')
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM callbacks) INTO queued;
    IF queued > 0 THEN
        PERFORM pg_notify('baton_outbox', '');
    END IF;
    RETURN NULL;
END
$$
"""
