"""Access control: projects (tenants), API keys, the audit trail; sealed agent secrets.

Every agent, workflow and run gets a project; what existed before lands in the
`default` project. Names become unique per project. Agent credentials become text,
sealed with the server's secret key: rows written before this migration hold plain
JSON until the server seals them at start (``baton_server.secrets.seal_stored``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NOW = sa.text("now()")
_DEFAULT_PROJECT_ID = "00000000-0000-0000-0000-000000000001"


def _project_column() -> sa.Column[object]:
    """The column alone; its foreign key is created explicitly (named as tables.py)."""
    return sa.Column(
        "project_id",
        UUID(as_uuid=True),
        nullable=False,
        server_default=sa.text(f"'{_DEFAULT_PROJECT_ID}'::uuid"),
    )


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.execute(
        "INSERT INTO projects (id, name, description) VALUES "
        f"('{_DEFAULT_PROJECT_ID}', 'default', 'The project every installation starts with')"
    )

    for table in ("agents", "workflows", "runs"):
        op.add_column(table, _project_column())
        op.create_foreign_key(
            op.f(f"fk_{table}_project_id_projects"), table, "projects", ["project_id"], ["id"]
        )
    for table in ("agents", "workflows"):
        op.drop_index(f"uq_{table}_live_name", table_name=table)
        op.create_index(
            f"uq_{table}_live_name",
            table,
            ["project_id", "name"],
            unique=True,
            postgresql_where=sa.text("status <> 'deleted'"),
        )
    op.drop_index("ix_runs_created_at", table_name="runs")
    op.drop_index("ix_runs_status_created_at", table_name="runs")
    op.create_index("ix_runs_project_id_created_at", "runs", ["project_id", "created_at"])
    op.create_index(
        "ix_runs_project_id_status_created_at", "runs", ["project_id", "status", "created_at"]
    )
    op.alter_column("agents", "auth_config", type_=sa.Text, postgresql_using="auth_config::text")

    op.create_table(
        "api_keys",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        _project_column(),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.LargeBinary, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_api_keys_project_id_projects")
        ),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
        sa.CheckConstraint("role IN ('viewer', 'editor', 'admin')", name=op.f("ck_api_keys_role")),
    )
    op.create_index(
        "uq_api_keys_live_name",
        "api_keys",
        ["project_id", "name"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )

    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("actor_type", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("project_id", UUID(as_uuid=True), nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("resource_type", sa.Text, nullable=False),
        sa.Column("resource_id", sa.Text, nullable=False),
        sa.Column("client_address", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_created_at", "audit_events", ["created_at"])
    op.create_index("ix_audit_events_actor_created_at", "audit_events", ["actor", "created_at"])
    op.create_index(
        "ix_audit_events_resource_type_resource_id",
        "audit_events",
        ["resource_type", "resource_id"],
    )


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("api_keys")
    # Sealed credentials cannot be turned back into JSON here; they are dropped.
    op.execute("UPDATE agents SET auth_config = NULL WHERE auth_config NOT LIKE '{%'")
    op.alter_column("agents", "auth_config", type_=JSONB, postgresql_using="auth_config::jsonb")
    op.drop_index("ix_runs_project_id_status_created_at", table_name="runs")
    op.drop_index("ix_runs_project_id_created_at", table_name="runs")
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_status_created_at", "runs", ["status", "created_at"])
    for table in ("agents", "workflows"):
        op.drop_index(f"uq_{table}_live_name", table_name=table)
        op.create_index(
            f"uq_{table}_live_name",
            table,
            ["name"],
            unique=True,
            postgresql_where=sa.text("status <> 'deleted'"),
        )
    for table in ("agents", "workflows", "runs"):
        op.drop_column(table, "project_id")
    op.drop_table("projects")
