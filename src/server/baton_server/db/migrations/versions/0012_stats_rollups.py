"""Statistics kept up as runs end and AI calls are written, never by scanning runs.

Two triggers append one row to a delta table for each change that counts: a run whose
status becomes COMPLETED, FAILED or CANCELLED (and a retried run leaving that status,
which takes its end back out), and each AI call. A delta is a plain insert into a table
without indexes, so two workers ending runs of the same workflow never wait on each
other. Workers fold the deltas into hourly rollups every few seconds, moving them in one
statement (``baton_server.stats.rollups``). Statistics read the rollups plus the deltas
not yet folded, so they are exact at any moment and cost a few thousand rows at most,
whatever the size of the run history. Deleting runs (retention, DeleteRun) leaves the
statistics as they are: they are the history of executions.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TERMINAL = "('COMPLETED', 'FAILED', 'CANCELLED')"

_RUN_ENDED = f"""
CREATE FUNCTION baton_run_stats_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN {_TERMINAL} THEN
        INSERT INTO run_stats_deltas (project_id, workflow_id, status, ended_at, runs,
                                      duration_ms, cost, tokens)
        VALUES (NEW.project_id, NEW.workflow_id, NEW.status,
                COALESCE(NEW.completed_at, NEW.cancelled_at, now()), 1,
                extract(epoch FROM COALESCE(NEW.completed_at, NEW.cancelled_at, now())
                                   - NEW.created_at) * 1000,
                NEW.total_cost, NEW.tokens_input + NEW.tokens_output);
    END IF;
    IF OLD.status IN {_TERMINAL} THEN
        -- A retry: the earlier end no longer counts (it is counted again when it ends).
        INSERT INTO run_stats_deltas (project_id, workflow_id, status, ended_at, runs,
                                      duration_ms, cost, tokens)
        VALUES (OLD.project_id, OLD.workflow_id, OLD.status,
                COALESCE(OLD.completed_at, OLD.cancelled_at, OLD.updated_at), -1,
                -extract(epoch FROM COALESCE(OLD.completed_at, OLD.cancelled_at,
                                             OLD.updated_at) - OLD.created_at) * 1000,
                -OLD.total_cost, -(OLD.tokens_input + OLD.tokens_output));
    END IF;
    RETURN NULL;
END $$
"""
_RUN_ENDED_TRIGGER = f"""
CREATE TRIGGER runs_stats AFTER UPDATE OF status ON runs FOR EACH ROW
WHEN (OLD.status IS DISTINCT FROM NEW.status
      AND (NEW.status IN {_TERMINAL} OR OLD.status IN {_TERMINAL}))
EXECUTE FUNCTION baton_run_stats_delta();
"""

_CALLS_ADDED = """
CREATE FUNCTION baton_usage_stats_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_stats_deltas (project_id, workflow_id, model, at, calls,
                                    tokens_input, tokens_output, cost)
    SELECT r.project_id, r.workflow_id, n.model, n.created_at, 1, n.tokens_input,
           n.tokens_output, n.cost
    FROM added n JOIN runs r ON r.id = n.run_id;
    RETURN NULL;
END $$
"""
_CALLS_ADDED_TRIGGER = """
CREATE TRIGGER ai_calls_stats AFTER INSERT ON ai_calls REFERENCING NEW TABLE AS added
FOR EACH STATEMENT EXECUTE FUNCTION baton_usage_stats_delta();
"""


def _keys() -> list[sa.Column[object]]:
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


def upgrade() -> None:
    op.create_table(
        "run_stats_deltas",
        *_keys(),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        *_run_measures(),
    )
    op.create_table(
        "run_stats",
        *_keys(),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        *_run_measures(),
        sa.PrimaryKeyConstraint("project_id", "workflow_id", "hour", "status"),
    )
    op.create_table(
        "usage_stats_deltas",
        *_keys(),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        *_usage_measures(),
    )
    op.create_table(
        "usage_stats",
        *_keys(),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        *_usage_measures(),
        sa.PrimaryKeyConstraint("project_id", "workflow_id", "hour", "model"),
    )
    for statement in (_RUN_ENDED, _RUN_ENDED_TRIGGER, _CALLS_ADDED, _CALLS_ADDED_TRIGGER):
        op.execute(statement)
    # Runs that ended before this migration count from the start.
    op.execute(
        f"""
        INSERT INTO run_stats_deltas (project_id, workflow_id, status, ended_at, runs,
                                      duration_ms, cost, tokens)
        SELECT project_id, workflow_id, status, COALESCE(completed_at, cancelled_at, updated_at),
               1, extract(epoch FROM COALESCE(completed_at, cancelled_at, updated_at)
                                     - created_at) * 1000,
               total_cost, tokens_input + tokens_output
        FROM runs WHERE status IN {_TERMINAL}
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER ai_calls_stats ON ai_calls")
    op.execute("DROP FUNCTION baton_usage_stats_delta()")
    op.execute("DROP TRIGGER runs_stats ON runs")
    op.execute("DROP FUNCTION baton_run_stats_delta()")
    for table in ("usage_stats", "usage_stats_deltas", "run_stats", "run_stats_deltas"):
        op.drop_table(table)
