"""AI usage: the model calls agents report, their prices, and each run's totals.

``ai_calls`` holds one row per reported model call of a step attempt, written in the
same statement as the attempt's end. The run's totals (``tokens_input``,
``tokens_output``, ``total_cost``) are bumped in that statement too, so that listing and
sorting runs by cost reads the run alone. None of the new columns is indexed: run
updates stay HOT.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_now = sa.text("now()")
_DEFAULT_PROJECT_ID = "00000000-0000-0000-0000-000000000001"


def upgrade() -> None:
    for name in ("tokens_input", "tokens_output"):
        op.add_column("runs", sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("total_cost", sa.Float, nullable=False, server_default="0"))
    op.create_table(
        "ai_calls",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step_id", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("tokens_input", sa.BigInteger, nullable=False),
        sa.Column("tokens_output", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("unpriced", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    )
    op.create_index("ix_ai_calls_run_id_id", "ai_calls", ["run_id", "id"])
    op.create_table(
        "model_prices",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "project_id",
            UUID(as_uuid=True),
            sa.ForeignKey("projects.id"),
            nullable=False,
            server_default=sa.text(f"'{_DEFAULT_PROJECT_ID}'::uuid"),
        ),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("input_usd_per_million", sa.Float, nullable=False),
        sa.Column("output_usd_per_million", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
        sa.UniqueConstraint("project_id", "model"),
    )


def downgrade() -> None:
    op.drop_table("model_prices")
    op.drop_table("ai_calls")
    for name in ("total_cost", "tokens_output", "tokens_input"):
        op.drop_column("runs", name)
