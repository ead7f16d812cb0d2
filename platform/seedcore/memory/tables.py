"""Our SQL tables: flashbulb incidents and tuning jobs. One `Base.metadata`; Alembic creates them."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Flashbulb event types: the ones the platform records itself (callers may record others).
MODEL_TUNING_COMPLETED = "model_tuning_completed"
MODEL_TUNING_FAILED = "model_tuning_failed"
MODEL_PROMOTED = "model_promoted"
MODEL_PROMOTION_REJECTED = "model_promotion_rejected"
MODEL_REFRESHED = "model_refreshed"
EVENT_TYPES = (MODEL_TUNING_COMPLETED, MODEL_TUNING_FAILED, MODEL_PROMOTED, MODEL_PROMOTION_REJECTED, MODEL_REFRESHED)

# Tuning job states. A job moves queued -> running -> one of FINISHED_STATES (or queued -> cancelled).
JOB_QUEUED = "queued"
JOB_RUNNING = "running"
JOB_SUCCEEDED = "succeeded"
JOB_FAILED = "failed"
JOB_CANCELLED = "cancelled"
JOB_STATES = (JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)
FINISHED_STATES = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timezone-aware DateTime that always comes back as aware UTC (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = as_utc(value)
        # SQLite compares datetimes as text: store naive UTC so every row sorts alike.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return None if value is None else as_utc(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class Base(DeclarativeBase):
    """Declarative base; `Base.metadata` is what Alembic migrates."""


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
            "created_at": _iso(self.created_at),
        }


def new_job_id() -> str:
    """A fresh job id: 32 hex characters."""
    return uuid.uuid4().hex


class TuningJob(Base):
    """One tuning sweep submitted for background execution."""

    __tablename__ = "tuning_jobs"
    __table_args__ = (
        CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="ck_tuning_jobs_state"
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    state: Mapped[str] = mapped_column(String(16), index=True, default=JOB_QUEUED)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    experiment_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    trials_done: Mapped[int] = mapped_column(Integer, default=0)
    trials_total: Mapped[int] = mapped_column(Integer, default=0)
    best_auc: Mapped[float | None] = mapped_column(Float, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner_host: Mapped[str | None] = mapped_column(String(256), nullable=True)
    mlflow_parent_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def to_dict(self) -> dict:
        """JSON-ready; `job_id` repeats `id` for REST responses."""
        return {
            "id": self.id,
            "job_id": self.id,
            "state": self.state,
            "request": self.request,
            "experiment_name": self.experiment_name,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "trials_done": self.trials_done,
            "trials_total": self.trials_total,
            "best_auc": self.best_auc,
            "result": self.result,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "owner_pid": self.owner_pid,
            "owner_host": self.owner_host,
            "mlflow_parent_run_id": self.mlflow_parent_run_id,
        }
