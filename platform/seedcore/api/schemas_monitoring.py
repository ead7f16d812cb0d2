"""Request and response models of the flywheel endpoints: evaluate, feedback, monitors, schedules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from seedcore.api._http import MAX_INT
from seedcore.api.schemas_serving import instance_rows
from seedcore.db.tables_flywheel import CATCH_UP_POLICIES, CONCURRENCY_POLICIES, ID_LENGTH
from seedcore.monitoring.feedback import MAX_FEEDBACK_ROWS, MAX_ID_CHARS
from seedcore.monitoring.monitors import MonitorBody, MonitorPatch
from seedcore.monitoring.schedules import ScheduleBody, SchedulePatch
from seedcore.request_models import DataFields, StrictBody

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


PredictionId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
Label = Annotated[int, Field(strict=True, ge=0, le=1)]  # strict: true and 1.0 are not labels


class FeedbackRequest(StrictBody):
    """Outcomes: `prediction_ids` + `labels`, or `instances` (rows scored elsewhere) + `labels`."""

    prediction_ids: list[PredictionId] | None = Field(
        default=None, min_length=1, max_length=MAX_FEEDBACK_ROWS, json_schema_extra={"uniqueItems": True},
        description="ids from /xgboost/predict answers, each once")
    instances: instance_rows(MAX_FEEDBACK_ROWS) | None = Field(default=None,
                                                               description="rows as /xgboost/predict takes them")
    labels: list[Label] = Field(min_length=1, max_length=MAX_FEEDBACK_ROWS, description="0 or 1, one per id or row")


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
    monitor_id: str = Field(max_length=ID_LENGTH)


class SchedulePath(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schedule_id: str = Field(max_length=ID_LENGTH)


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
    max_sweeps_per_day: int | None = None
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
    catch_up: Literal[CATCH_UP_POLICIES]
    concurrency_policy: Literal[CONCURRENCY_POLICIES]
    enabled: bool
    next_run_at: str | None
    last_run_at: str | None
    last_job_id: str | None
    last_skipped_at: str | None = Field(None, description="when a due time last started nothing")
    skipped_count: int = Field(0, description="due times that started nothing: the concurrency policy, the "
                                              "queue cap or the triggered-sweep budget")
    last_skip_reason: str | None = None


class ScheduleList(BaseModel):
    items: list[ScheduleResponse]
    total: int


class Deleted(BaseModel):
    id: str
    deleted: bool
