"""The tuning_jobs table and the job states (one declaration; the CHECK constraint derives from it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from seedcore.db.base import Base, UTCDateTime, iso_utc, utcnow
from seedcore.db.stored_json import StoredJSON, as_object
from seedcore.vocabulary import JobKind, JobState, Trigger, values

# Tuning job states. A job moves queued -> running -> one of FINISHED_STATES (or queued -> cancelled).
JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED = JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED
JOB_FAILED, JOB_CANCELLED = JobState.FAILED, JobState.CANCELLED
JOB_STATES = values(JobState)
FINISHED_STATES = (JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)
ACTIVE_STATES = (JOB_QUEUED, JOB_RUNNING)

# What started a job: a person at the CLI, an API call, a schedule or a monitor (`schedule:<id>`, `monitor:<id>`).
TRIGGER_MANUAL, TRIGGER_API = Trigger.MANUAL, Trigger.API
TRIGGER_SCHEDULE_PREFIX, TRIGGER_MONITOR_PREFIX = Trigger.SCHEDULE, Trigger.MONITOR

# What a job does: a sweep (`tune`) or one training run with fixed parameters (`train`).
KIND_TUNE, KIND_TRAIN = JobKind.TUNE, JobKind.TRAIN
JOB_KINDS = values(JobKind)


def new_job_id() -> str:
    """A fresh job id: 32 hex characters."""
    return uuid.uuid4().hex


class TuningJob(Base):
    """One tuning sweep submitted for background execution."""

    __tablename__ = "tuning_jobs"
    __table_args__ = (
        CheckConstraint(f"state IN ({', '.join(repr(s) for s in JOB_STATES)})", name="ck_tuning_jobs_state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    state: Mapped[str] = mapped_column(String(16), index=True, default=JOB_QUEUED)
    request: Mapped[dict[str, Any]] = mapped_column(StoredJSON)  # reads never fail on a poison row
    experiment_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    trials_done: Mapped[int] = mapped_column(Integer, default=0)
    trials_total: Mapped[int] = mapped_column(Integer, default=0)
    best_auc: Mapped[float | None] = mapped_column(Float, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(StoredJSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner_host: Mapped[str | None] = mapped_column(String(256), nullable=True)
    owner_start: Mapped[str | None] = mapped_column(String(64), nullable=True)  # seedcore.process_identity
    mlflow_parent_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    trigger: Mapped[str] = mapped_column(String(64), index=True, default=TRIGGER_API, server_default=TRIGGER_API)
    kind: Mapped[str] = mapped_column(String(16), default=KIND_TUNE, server_default=KIND_TUNE)

    def to_dict(self) -> dict:
        """JSON-ready; `job_id` repeats `id` for REST responses. A stored request or result that cannot be
        read back (an old row) is served as an `{"unreadable": ...}` marker, never an error."""
        return {
            "id": self.id,
            "job_id": self.id,
            "state": self.state,
            "request": as_object(self.request),
            "experiment_name": self.experiment_name,
            "created_at": iso_utc(self.created_at),
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "trials_done": self.trials_done,
            "trials_total": self.trials_total,
            "best_auc": self.best_auc,
            "result": as_object(self.result, nullable=True),
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "owner_pid": self.owner_pid,
            "owner_host": self.owner_host,
            "owner_start": self.owner_start,
            "mlflow_parent_run_id": self.mlflow_parent_run_id,
            "trigger": self.trigger,
            "kind": self.kind,
        }
