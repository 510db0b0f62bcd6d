"""Room on the pages of runs and run steps for their updates.

Every run and step row is updated several times in its life (each step transition).
With free space on its page, an update that changes no indexed column is a HOT update:
the new row version stays on the page and no index gets a new entry, which saves most
of the update's write-ahead log and CPU.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLES = ("runs", "run_steps")


def upgrade() -> None:
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 70)")


def downgrade() -> None:
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
