"""schedule concurrency policy and triggered-sweep budgets

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite adds a CHECK constraint only by rebuilding the table.
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(sa.Column("concurrency_policy", sa.String(16), nullable=False, server_default="forbid"))
        batch.add_column(sa.Column("last_skipped_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("skipped_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_skip_reason", sa.Text(), nullable=True))
        batch.create_check_constraint("ck_schedules_concurrency_policy",
                                      "concurrency_policy IN ('forbid', 'allow', 'replace')")
    op.add_column("monitors", sa.Column("max_sweeps_per_day", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("monitors") as batch:
        batch.drop_column("max_sweeps_per_day")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_constraint("ck_schedules_concurrency_policy", type_="check")
        batch.drop_column("last_skip_reason")
        batch.drop_column("skipped_count")
        batch.drop_column("last_skipped_at")
        batch.drop_column("concurrency_policy")
