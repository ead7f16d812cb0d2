"""Request and response models of the flywheel endpoints: evaluate, feedback, monitors, schedules."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from seedcore.api._http import MAX_INT
from seedcore.monitoring.monitors import MonitorBody, MonitorPatch
from seedcore.requests import DataFields, StrictBody
from seedcore.scheduling import ScheduleBody, SchedulePatch

__all__ = ["EvaluateRequest", "EvaluationResponse", "FeedbackRequest", "FeedbackResponse", "MonitorBody",
           "MonitorCheck", "MonitorList", "MonitorPatch", "MonitorPath", "MonitorResponse", "ScheduleBody",
           "ScheduleList", "SchedulePatch", "SchedulePath", "ScheduleResponse", "Deleted"]


class EvaluateRequest(DataFields):
    """Labelled data to score a version on (default: the production version; default data: built-in)."""

    version: int | None = Field(default=None, ge=1, le=MAX_INT)


class EvaluationResponse(BaseModel):
    status: Literal["success"]
    id: str
    model_name: str
    model_version: int
    data_source: str
    label_column: str
    feature_names: list[str]
    metrics: dict[str, float | int | None] = Field(description="auc, logloss, brier, accuracy (at 0.5), "
                                                               "positive_rate, mean_prediction, rows")
    calibration: list[dict[str, Any]] = Field(description="equal-width bins: rows, mean predicted, observed rate")
    holdout: dict[str, float | None]
    mlflow_run_id: str


class FeedbackRequest(StrictBody):
    """Outcomes: `prediction_ids` + `labels`, or `instances` (rows scored elsewhere) + `labels`."""

    prediction_ids: list[Any] | None = Field(default=None, description="ids from /xgboost/predict answers")
    instances: list[Any] | None = Field(default=None, description="rows as /xgboost/predict takes them")
    labels: list[Any] = Field(description="0 or 1, one per id or row")


class FeedbackResult(BaseModel):
    prediction_id: str
    status: Literal["accepted", "unknown", "expired"]


class FeedbackResponse(BaseModel):
    status: Literal["success"]
    accepted: int
    rejected: int
    results: list[FeedbackResult]
    model_version: int | None = Field(None, description="instances only: the version that scored them")


class MonitorPath(BaseModel):
    model_config = ConfigDict(extra="forbid")
    monitor_id: str = Field(max_length=64)


class SchedulePath(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schedule_id: str = Field(max_length=64)


class MonitorResponse(BaseModel):
    """A monitor as stored, with what its last check saw."""

    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    metric: str
    threshold: float | None
    max_drop: float | None
    min_samples: int
    window: dict[str, Any]
    cooldown_s: float
    tune: dict[str, Any]
    enabled: bool
    last_value: float | None
    last_fired_at: str | None
    last_job_id: str | None


class MonitorCheck(MonitorResponse):
    """One check's outcome: `state` (ok, breached, insufficient_data, no_model), `fired`, `job_id`."""

    state: str
    value: float | None
    n: int | None
    fired: bool = False
    job_id: str | None = None


class MonitorList(BaseModel):
    items: list[MonitorResponse]
    total: int


class ScheduleResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str
    cron: str
    timezone: str
    tune: dict[str, Any]
    catch_up: Literal["run_once", "skip"]
    enabled: bool
    next_run_at: str | None
    last_run_at: str | None
    last_job_id: str | None


class ScheduleList(BaseModel):
    items: list[ScheduleResponse]
    total: int


class Deleted(BaseModel):
    id: str
    deleted: bool
