"""initial: flashbulb_incidents and tuning_jobs

Revision ID: 0001
Revises:
Create Date: 2025-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "flashbulb_incidents",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("salience", sa.Float(), nullable=False),
        sa.Column("experiment_name", sa.String(256), nullable=True),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        _timestamp("created_at", nullable=False),
        sa.CheckConstraint("salience >= 0 AND salience <= 1", name="ck_flashbulb_incidents_salience_range"),
    )
    op.create_index("ix_flashbulb_incidents_event_type", "flashbulb_incidents", ["event_type"])
    op.create_index("ix_flashbulb_incidents_created_at", "flashbulb_incidents", ["created_at"])

    op.create_table(
        "tuning_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("experiment_name", sa.String(256), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at"),
        sa.Column("trials_done", sa.Integer(), nullable=False),
        sa.Column("trials_total", sa.Integer(), nullable=False),
        sa.Column("best_auc", sa.Float(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("owner_pid", sa.Integer(), nullable=True),
        sa.Column("owner_host", sa.String(256), nullable=True),
        sa.Column("mlflow_parent_run_id", sa.String(64), nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="ck_tuning_jobs_state"
        ),
    )
    op.create_index("ix_tuning_jobs_state", "tuning_jobs", ["state"])
    op.create_index("ix_tuning_jobs_created_at", "tuning_jobs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_tuning_jobs_created_at", table_name="tuning_jobs")
    op.drop_index("ix_tuning_jobs_state", table_name="tuning_jobs")
    op.drop_table("tuning_jobs")
    op.drop_index("ix_flashbulb_incidents_created_at", table_name="flashbulb_incidents")
    op.drop_index("ix_flashbulb_incidents_event_type", table_name="flashbulb_incidents")
    op.drop_table("flashbulb_incidents")
