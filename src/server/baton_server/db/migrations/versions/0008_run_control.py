"""Run control: exact agent-cache invalidation, paused runs, run deletion and retention.

* ``projects.agents_revision`` is bumped in every transaction that creates, changes or
  deletes one of the project's agents. Each executor commit reads it, so a worker knows
  when its cached agents are stale without a round trip of its own.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "projects",
        sa.Column("agents_revision", sa.BigInteger, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("projects", "agents_revision")
