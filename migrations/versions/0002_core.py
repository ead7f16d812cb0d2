"""core: a lock table for cross-process critical sections; jobs know their trigger and kind

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seedcore_locks",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("tuning_jobs") as batch:
        batch.add_column(sa.Column("trigger", sa.String(64), nullable=False, server_default="api"))
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="tune"))
        batch.create_index("ix_tuning_jobs_trigger", ["trigger"])


def downgrade() -> None:
    with op.batch_alter_table("tuning_jobs") as batch:
        batch.drop_index("ix_tuning_jobs_trigger")
        batch.drop_column("kind")
        batch.drop_column("trigger")
    op.drop_table("seedcore_locks")
