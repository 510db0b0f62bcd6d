"""The relational schema, as SQLAlchemy Core tables (no ORM: rows stay plain tuples).

Migrations in ``baton_server/db/migrations`` create exactly this schema; a test checks
that the two agree.
"""

from __future__ import annotations

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

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("auth_type", sa.Text, nullable=False),
    # Write-only credentials: read only by the executor when it calls the agent.
    sa.Column("auth_config", JSONB, nullable=True),
    sa.Column("timeout_ms", sa.Integer, nullable=False),
    sa.Column("max_retries", sa.Integer, nullable=False),
    sa.Column("initial_delay_ms", sa.Integer, nullable=False),
    sa.Column("max_delay_ms", sa.Integer, nullable=False),
    sa.Column("backoff_multiplier", sa.Float, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.CheckConstraint("status IN ('active', 'inactive', 'deleted')", name="status"),
    sa.CheckConstraint("auth_type IN ('none', 'bearer', 'apikey')", name="auth_type"),
    # Names are unique among live agents; a deleted agent's name can be reused.
    sa.Index(
        "uq_agents_live_name",
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
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.Text, nullable=False),
    # The current version; the version rows themselves are immutable.
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.CheckConstraint("status IN ('active', 'inactive', 'deleted')", name="status"),
    sa.Index(
        "uq_workflows_live_name",
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
