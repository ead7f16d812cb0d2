"""Request and response bodies of the tuning, training and promotion endpoints under `/xgboost`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from seedcore.api._http import MAX_INT
from seedcore.db.tables_jobs import JOB_STATES
from seedcore.request_models import StrictBody, TrainRequest, TuneRequest  # noqa: F401  (the API's request bodies)

JobState = Literal[JOB_STATES]


class BestTrial(BaseModel):
    model_config = ConfigDict(extra="allow")
    trial_id: str
    auc: float
    logloss: float
    training_time: float
    config: dict[str, Any]


class Promotion(BaseModel):
    """`status` is success, rejected (the champion gate said no, with both scores), skipped, unchanged (already
    in production) or error (the version stays registered; `reason` says why it was not promoted).
    `schema_change` lists how the feature names differ from production's when `allow_schema_change` let it in."""

    model_config = ConfigDict(extra="allow")
    status: Literal["success", "rejected", "skipped", "unchanged", "error"]
    reason: str | None = None
    source_path: str | None = None
    blessed_path: str | None = None
    metadata_path: str | None = None
    challenger: dict[str, float] | None = None
    champion: dict[str, float] | None = None


class TuneResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["success"]
    experiment_name: str
    best_trial: BestTrial
    promotion: Promotion
    total_trials: int
    experiment_path: str
    model_version: int
    holdout: dict[str, float]
    mlflow: dict[str, Any]
    trials: dict[str, int]
    job_id: str | None = None
    followups: dict[str, Literal["pending", "done", "failed"]] | None = Field(
        None, description="work done after the answer: model_card, drift_reference, plots; their end states show "
                          "in the job (`/xgboost/tune/status/<job_id>`)")


class JobProgress(BaseModel):
    trials_done: int
    trials_total: int
    best_auc: float | None


class JobResponse(BaseModel):
    """A tuning job: state queued | running | succeeded | failed | cancelled, its progress and result."""

    model_config = ConfigDict(extra="allow")
    status: Literal["success", "accepted"] = "success"
    job_id: str
    state: JobState
    experiment_name: str | None
    progress: JobProgress
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    mlflow_parent_run_id: str | None = None
    trigger: str | None = Field(default=None, description="manual, api, schedule:<id>, monitor:<id>, or "
                                                          "random_baseline:<id> / cold_baseline:<id> (a baseline "
                                                          "of sweep <id>)")
    kind: str | None = Field(default=None, description="tune or train")


class JobPath(BaseModel):
    """A job id in a path."""

    job_id: str = Field(min_length=1, max_length=64)


class JobListQuery(StrictBody):
    model_config = ConfigDict(extra="forbid", strict=False)  # query strings arrive as text
    limit: int = Field(default=20, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=MAX_INT)
    state: JobState | None = None


class JobList(BaseModel):
    status: Literal["success"] = "success"
    items: list[JobResponse]
    total: int
    limit: int
    offset: int


class TrainResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["success"]
    model_version: int
    validation: dict[str, float]
    holdout: dict[str, float]
    promotion: Promotion
    mlflow: dict[str, Any]


class PromoteRequest(StrictBody):
    version: int = Field(ge=1, le=MAX_INT, description="registry version of utility_risk_model")
    force: bool = False
    allow_schema_change: bool = Field(default=False, description="promote even when the version was trained on "
                                      "other feature names than production's (else 409 naming the difference); "
                                      "recorded in the promotion's incident")


class PromoteResponse(Promotion):
    version: int
