"""Fan-out steps: the items of a ``for_each`` step are run steps of their own.

An item's row names its fan-out step (``parent_step_id``) and its place in the list
(``item_index``); its ``step_id`` is ``<parent_step_id>[<item_index>]``. Steps of the
graph have neither.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run_steps", sa.Column("parent_step_id", sa.Text, nullable=True))
    op.add_column("run_steps", sa.Column("item_index", sa.Integer, nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM run_steps WHERE parent_step_id IS NOT NULL")
    op.drop_column("run_steps", "item_index")
    op.drop_column("run_steps", "parent_step_id")
