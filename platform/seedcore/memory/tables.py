"""The flashbulb_incidents table and the event types the platform records itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from seedcore.db.base import Base, UTCDateTime, iso_utc, utcnow

# Flashbulb event types: the ones the platform records itself (callers may record others).
MODEL_TUNING_COMPLETED = "model_tuning_completed"
MODEL_TUNING_FAILED = "model_tuning_failed"
MODEL_PROMOTED = "model_promoted"
MODEL_PROMOTION_REJECTED = "model_promotion_rejected"
MODEL_REFRESHED = "model_refreshed"
EVENT_TYPES = (MODEL_TUNING_COMPLETED, MODEL_TUNING_FAILED, MODEL_PROMOTED, MODEL_PROMOTION_REJECTED, MODEL_REFRESHED)


class FlashbulbIncident(Base):
    """One high-impact event, kept forever (append-only)."""

    __tablename__ = "flashbulb_incidents"
    __table_args__ = (
        CheckConstraint("salience >= 0 AND salience <= 1", name="ck_flashbulb_incidents_salience_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(32))
    salience: Mapped[float] = mapped_column(Float)
    experiment_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
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
            "payload": self.payload,
            "timestamp": self.created_at.timestamp(),
            "created_at": iso_utc(self.created_at),
        }


