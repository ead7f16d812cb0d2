"""energy ledger (jobs, versions) and the monitor metric estimated_auc

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

METRICS_BEFORE = "metric IN ('live_auc', 'live_logloss', 'psi_max', 'evaluation_auc')"
METRICS_AFTER = "metric IN ('live_auc', 'live_logloss', 'psi_max', 'evaluation_auc', 'estimated_auc')"


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "energy_jobs",
        sa.Column("job_id", sa.String(32), primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cpu_seconds", sa.Float(), nullable=False),
        sa.Column("wall_seconds", sa.Float(), nullable=False),
        sa.Column("watts_per_cpu", sa.Float(), nullable=False),
        sa.Column("joules", sa.Float(), nullable=False),
        sa.Column("processes", sa.Integer(), nullable=False),
        _time("started_at", nullable=False),
        _time("ended_at", nullable=False),
    )
    op.create_index("ix_energy_jobs_model_version", "energy_jobs", ["model_version"])
    op.create_table(
        "energy_versions",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("mem_bytes", sa.Integer(), nullable=True),
        sa.Column("served_bytes", sa.Integer(), nullable=True),
        _time("promoted_at"),
        sa.Column("previous_version", sa.Integer(), nullable=True),
        sa.Column("champion_logloss", sa.Float(), nullable=True),
        sa.Column("challenger_logloss", sa.Float(), nullable=True),
        sa.Column("predictions_per_day", sa.Float(), nullable=True),
        _time("break_even_at"),
        sa.Column("break_even_incident_id", sa.Integer(), nullable=True),
        sa.Column("calibration", sa.JSON(), nullable=True),
        _time("created_at", nullable=False),
    )
    # Batch mode: SQLite changes a CHECK constraint only by rebuilding the table.
    with op.batch_alter_table("monitors") as batch:
        batch.drop_constraint("ck_monitors_metric", type_="check")
        batch.create_check_constraint("ck_monitors_metric", METRICS_AFTER)


def downgrade() -> None:
    # the old constraint cannot hold a monitor on estimated_auc: those monitors go with the metric
    op.execute("DELETE FROM monitors WHERE metric = 'estimated_auc'")
    with op.batch_alter_table("monitors") as batch:
        batch.drop_constraint("ck_monitors_metric", type_="check")
        batch.create_check_constraint("ck_monitors_metric", METRICS_BEFORE)
    op.drop_table("energy_versions")
    op.drop_index("ix_energy_jobs_model_version", table_name="energy_jobs")
    op.drop_table("energy_jobs")
