"""promotion journal and process identity (owners of locks and jobs)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "promotion_journal",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("alias", sa.String(256), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("blessed_link", sa.Text(), nullable=False),
        sa.Column("blessed_dir", sa.String(255), nullable=False),
        sa.Column("previous_blessed_dir", sa.String(255), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        _time("finished_at"),
        sa.CheckConstraint("state IN ('open', 'completed', 'rolled_forward', 'rolled_back')",
                           name="ck_promotion_journal_state"),
    )
    op.create_index("ix_promotion_journal_model_state", "promotion_journal", ["model_name", "state"])
    # A job's owner is its process: pid and host, and now when it started (a recycled pid is someone else).
    op.add_column("tuning_jobs", sa.Column("owner_start", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tuning_jobs") as batch:
        batch.drop_column("owner_start")
    op.drop_index("ix_promotion_journal_model_state", table_name="promotion_journal")
    op.drop_table("promotion_journal")
