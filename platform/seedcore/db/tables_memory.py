"""The flashbulb_incidents table and the event types the platform records itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from seedcore.db.base import Base, UTCDateTime, iso_utc, utcnow
from seedcore.db.stored_json import StoredJSON, as_object
from seedcore.request_models import EXPERIMENT_NAME_MAX

# Flashbulb event types: the ones the platform records itself (callers may record others).
MODEL_TUNING_COMPLETED = "model_tuning_completed"
MODEL_TUNING_FAILED = "model_tuning_failed"
MODEL_PROMOTED = "model_promoted"
MODEL_PROMOTION_REJECTED = "model_promotion_rejected"
MODEL_REFRESHED = "model_refreshed"
EVENT_TYPES = (MODEL_TUNING_COMPLETED, MODEL_TUNING_FAILED, MODEL_PROMOTED, MODEL_PROMOTION_REJECTED, MODEL_REFRESHED)

# An incident's limits, declared once: the columns, the store's checks and the API schema derive from them.
# (The payload's depth and size caps are settings: SEEDCORE_MAX_JSON_DEPTH, SEEDCORE_MAX_INCIDENT_PAYLOAD_BYTES.)
TEXT_LIMITS = {"event_type": 64, "outcome": 32, "experiment_name": EXPERIMENT_NAME_MAX, "model_version": 32}
SALIENCE_RANGE = (0.0, 1.0)


class FlashbulbIncident(Base):
    """One high-impact event, kept forever (append-only)."""

    __tablename__ = "flashbulb_incidents"
    __table_args__ = (
        CheckConstraint(f"salience >= {SALIENCE_RANGE[0]:g} AND salience <= {SALIENCE_RANGE[1]:g}",
                        name="ck_flashbulb_incidents_salience_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_type: Mapped[str] = mapped_column(String(TEXT_LIMITS["event_type"]), index=True)
    outcome: Mapped[str] = mapped_column(String(TEXT_LIMITS["outcome"]))
    salience: Mapped[float] = mapped_column(Float)
    experiment_name: Mapped[str | None] = mapped_column(String(TEXT_LIMITS["experiment_name"]), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(TEXT_LIMITS["model_version"]), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(StoredJSON)  # reads never fail on a poison row
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True, default=utcnow)

    def to_dict(self) -> dict:
        """JSON-ready: `timestamp` is epoch seconds, `created_at` ISO 8601 UTC."""
        return {
            "id": self.id,
            "event_type": self.event_type,
            "outcome": self.outcome,
            "salience": self.salience,
            "experiment_name": self.experiment_name,
            "model_version": self.model_version,
            "payload": as_object(self.payload),
            "timestamp": self.created_at.timestamp(),
            "created_at": iso_utc(self.created_at),
        }


