"""Unfinished runs indexed by age, not by lease expiry.

A lease is taken, renewed every few seconds and given back: with ``lease_expires_at`` in
an index, each of those updates wrote a new entry into every index of ``runs`` (no HOT
update). The reconciler, the index's reader, scans unfinished runs oldest first anyway;
keyed by ``created_at``, which never changes, the index lets lease updates stay HOT.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_UNFINISHED = "status IN ('PENDING', 'RUNNING')"


def upgrade() -> None:
    op.drop_index("ix_runs_unfinished", table_name="runs")
    op.create_index("ix_runs_unfinished", "runs", ["created_at"], postgresql_where=_UNFINISHED)


def downgrade() -> None:
    op.drop_index("ix_runs_unfinished", table_name="runs")
    op.create_index(
        "ix_runs_unfinished", "runs", ["lease_expires_at"], postgresql_where=_UNFINISHED
    )
