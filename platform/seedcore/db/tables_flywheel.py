"""The flywheel's tables: the prediction log (with outcomes), evaluations, drift references, monitors, schedules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from seedcore.db.base import Base, UTCDateTime, iso_utc, utcnow
from seedcore.vocabulary import CatchUp, Concurrency, MonitorMetric, values

# What a monitor watches. AUC-like metrics breach when they fall; the others when they rise.
METRIC_LIVE_AUC, METRIC_LIVE_LOGLOSS = MonitorMetric.LIVE_AUC, MonitorMetric.LIVE_LOGLOSS
METRIC_PSI_MAX, METRIC_EVALUATION_AUC = MonitorMetric.PSI_MAX, MonitorMetric.EVALUATION_AUC
METRIC_ESTIMATED_AUC = MonitorMetric.ESTIMATED_AUC
MONITOR_METRICS = values(MonitorMetric)
HIGHER_IS_BETTER = (METRIC_LIVE_AUC, METRIC_EVALUATION_AUC, METRIC_ESTIMATED_AUC)

# What a schedule does with due times it missed while nothing ran.
CATCH_UP_RUN_ONCE, CATCH_UP_SKIP = CatchUp.RUN_ONCE, CatchUp.SKIP
CATCH_UP_POLICIES = values(CatchUp)

# What a schedule does at a due time while a job it started is still queued or running (as a Kubernetes
# CronJob): skip this run, start another beside it, or cancel the old one and start the new one.
CONCURRENCY_FORBID, CONCURRENCY_ALLOW, CONCURRENCY_REPLACE = Concurrency.FORBID, Concurrency.ALLOW, Concurrency.REPLACE
CONCURRENCY_POLICIES = values(Concurrency)


ID_LENGTH = 32  # monitor and schedule ids: uuid4 in hex


def new_id() -> str:
    """A fresh id: ID_LENGTH hex characters."""
    return uuid.uuid4().hex


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class PredictionRecord(Base):
    """One logged prediction; `label` (with `labelled_at`) arrives later as feedback. The id starts with the
    issue time (see predlog.new_prediction_id), so it orders rows by age."""

    __tablename__ = "prediction_log"
    __table_args__ = (Index("ix_prediction_log_version_labelled", "model_name", "model_version", "labelled_at"),
                      Index("ix_prediction_log_version_created", "model_name", "model_version", "created_at"),
                      # retention: unlabelled rows (labelled_at NULL) by id, labelled ones by labelled_at
                      Index("ix_prediction_log_labelled", "labelled_at", "id"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    features: Mapped[list[Any]] = mapped_column(JSON)
    prediction: Mapped[float] = mapped_column(Float)
    label: Mapped[int | None] = mapped_column(Integer, nullable=True)
    labelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ModelEvaluation(Base):
    """One evaluation of a model version on labelled data."""

    __tablename__ = "model_evaluations"
    __table_args__ = (Index("ix_model_evaluations_version", "model_name", "model_version", "created_at"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    data_source: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    calibration: Mapped[list[Any]] = mapped_column(JSON)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    def to_dict(self) -> dict:
        return {"id": self.id, "model_name": self.model_name, "model_version": self.model_version,
                "created_at": iso_utc(self.created_at), "data_source": self.data_source, "rows": self.rows,
                "metrics": self.metrics, "calibration": self.calibration, "mlflow_run_id": self.mlflow_run_id}


class DriftReference(Base):
    """A version's training distribution: per feature, quantile bin edges and the share of rows in each bin."""

    __tablename__ = "drift_references"

    model_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    bins: Mapped[dict[str, Any]] = mapped_column(JSON)


class Monitor(Base):
    """A rule over a production metric; when breached it starts its sweep (trigger `monitor:<id>`)."""

    __tablename__ = "monitors"
    __table_args__ = (CheckConstraint(_in("metric", MONITOR_METRICS), name="ck_monitors_metric"),)

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    metric: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_drop: Mapped[float | None] = mapped_column(Float, nullable=True)
    min_samples: Mapped[int] = mapped_column(Integer)
    window: Mapped[dict[str, Any]] = mapped_column(JSON)
    cooldown_s: Mapped[float] = mapped_column(Float)
    tune: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean)
    max_sweeps_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_n: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "metric": self.metric, "threshold": self.threshold,
                "max_drop": self.max_drop, "min_samples": self.min_samples, "window": self.window,
                "cooldown_s": self.cooldown_s, "tune": self.tune, "enabled": self.enabled,
                "max_sweeps_per_day": self.max_sweeps_per_day,
                "created_at": iso_utc(self.created_at), "last_value": self.last_value, "last_n": self.last_n,
                "last_state": self.last_state, "last_checked_at": iso_utc(self.last_checked_at),
                "last_fired_at": iso_utc(self.last_fired_at), "last_job_id": self.last_job_id,
                "last_error": self.last_error}


class Schedule(Base):
    """A cron schedule that starts its sweep (trigger `schedule:<id>`) at each due time, exactly once."""

    __tablename__ = "schedules"
    __table_args__ = (CheckConstraint(_in("catch_up", CATCH_UP_POLICIES), name="ck_schedules_catch_up"),
                      CheckConstraint(_in("concurrency_policy", CONCURRENCY_POLICIES),
                                      name="ck_schedules_concurrency_policy"))

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    tune: Mapped[dict[str, Any]] = mapped_column(JSON)
    catch_up: Mapped[str] = mapped_column(String(16))
    concurrency_policy: Mapped[str] = mapped_column(String(16), default=CONCURRENCY_FORBID,
                                                    server_default=CONCURRENCY_FORBID)
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Due times that started nothing (the concurrency policy, the queue cap or the triggered-sweep budget).
    last_skipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    skipped_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "cron": self.cron, "timezone": self.timezone, "tune": self.tune,
                "catch_up": self.catch_up, "concurrency_policy": self.concurrency_policy, "enabled": self.enabled,
                "created_at": iso_utc(self.created_at), "next_run_at": iso_utc(self.next_run_at),
                "last_run_at": iso_utc(self.last_run_at), "last_job_id": self.last_job_id,
                "last_error": self.last_error, "last_skipped_at": iso_utc(self.last_skipped_at),
                "skipped_count": self.skipped_count or 0, "last_skip_reason": self.last_skip_reason}
