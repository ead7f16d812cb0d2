"""flywheel: prediction log, evaluations, drift references, monitors, schedules

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "prediction_log",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        _time("created_at", nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("prediction", sa.Float(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=True),
        _time("labelled_at"),
    )
    op.create_index("ix_prediction_log_created_at", "prediction_log", ["created_at"])
    op.create_index("ix_prediction_log_version_labelled", "prediction_log",
                    ["model_name", "model_version", "labelled_at"])
    op.create_index("ix_prediction_log_version_created", "prediction_log",
                    ["model_name", "model_version", "created_at"])
    op.create_table(
        "model_evaluations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        _time("created_at", nullable=False),
        sa.Column("data_source", sa.Text(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("calibration", sa.JSON(), nullable=False),
        sa.Column("mlflow_run_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_model_evaluations_version", "model_evaluations", ["model_name", "model_version", "created_at"])
    op.create_table(
        "drift_references",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("model_version", sa.Integer(), primary_key=True),
        _time("created_at", nullable=False),
        sa.Column("bins", sa.JSON(), nullable=False),
    )
    _create_monitors()
    _create_schedules()


def _create_monitors() -> None:
    op.create_table(
        "monitors",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("max_drop", sa.Float(), nullable=True),
        sa.Column("min_samples", sa.Integer(), nullable=False),
        sa.Column("window", sa.JSON(), nullable=False),
        sa.Column("cooldown_s", sa.Float(), nullable=False),
        sa.Column("tune", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _time("created_at", nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("last_n", sa.Integer(), nullable=True),
        sa.Column("last_state", sa.String(32), nullable=True),
        _time("last_checked_at"),
        _time("last_fired_at"),
        sa.Column("last_job_id", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("metric IN ('live_auc', 'live_logloss', 'psi_max', 'evaluation_auc')",
                           name="ck_monitors_metric"),
    )


def _create_schedules() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("tune", sa.JSON(), nullable=False),
        sa.Column("catch_up", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _time("created_at", nullable=False),
        _time("next_run_at"),
        _time("last_run_at"),
        sa.Column("last_job_id", sa.String(32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("catch_up IN ('run_once', 'skip')", name="ck_schedules_catch_up"),
    )
    op.create_index("ix_schedules_next_run_at", "schedules", ["next_run_at"])


def downgrade() -> None:
    op.drop_index("ix_schedules_next_run_at", table_name="schedules")
    op.drop_table("schedules")
    op.drop_table("monitors")
    op.drop_table("drift_references")
    op.drop_index("ix_model_evaluations_version", table_name="model_evaluations")
    op.drop_table("model_evaluations")
    op.drop_index("ix_prediction_log_version_created", table_name="prediction_log")
    op.drop_index("ix_prediction_log_version_labelled", table_name="prediction_log")
    op.drop_index("ix_prediction_log_created_at", table_name="prediction_log")
    op.drop_table("prediction_log")
