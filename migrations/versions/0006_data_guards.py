"""prediction log labels kept apart from pruning; data guards

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the prediction log's retention walks unlabelled rows by id and labelled ones by labelled_at
    op.create_index("ix_prediction_log_labelled", "prediction_log", ["labelled_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_prediction_log_labelled", table_name="prediction_log")
