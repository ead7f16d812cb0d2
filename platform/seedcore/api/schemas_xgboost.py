"""Request and response bodies of the tuning, training and promotion endpoints under `/xgboost`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Name = Field(default="xgboost_tuning", min_length=1, max_length=250, description="MLflow experiment name")


class _Request(BaseModel):
    # strict: "promote": "yes" or "version": "3" is the caller's mistake, not something to guess at
    model_config = ConfigDict(extra="forbid", strict=True)


class DataFields(_Request):
    data_source: str | None = Field(default=None, description="CSV or Parquet path inside the data dir; "
                                                              "omit for the built-in dataset")
    label_column: str | None = Field(default=None, min_length=1)
    feature_columns: list[str] | None = Field(default=None, min_length=1)


class TuneRequest(DataFields):
    """The guide's tuning request, plus the data source and promotion knobs."""

    space_type: Literal["conservative", "default", "aggressive"] = "default"
    config_type: Literal["conservative", "default", "aggressive"] = "default"
    custom_search_space: dict[str, Any] | None = Field(
        default=None, description='parameter -> constant or {"type": "uniform|loguniform|randint|quniform|choice", '
                                  '"lower": .., "upper": .., "q": .., "values": [..]}')
    custom_tune_config: dict[str, Any] | None = Field(
        default=None, description="num_samples, max_concurrent_trials, time_budget_s, grace_period, "
                                  "reduction_factor, seed")
    experiment_name: str = Name
    promote: bool = Field(default=True, description="promote the winner through the champion gate")
    force: bool = Field(default=False, description="promote even if the champion is better")


class BestTrial(BaseModel):
    model_config = ConfigDict(extra="allow")
    trial_id: str
    auc: float
    logloss: float
    training_time: float
    config: dict[str, Any]


class Promotion(BaseModel):
    """`status` is success, rejected (the champion gate said no, with both scores) or skipped."""

    model_config = ConfigDict(extra="allow")
    status: Literal["success", "rejected", "skipped", "unchanged"]
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


class JobProgress(BaseModel):
    trials_done: int
    trials_total: int
    best_auc: float | None


class JobResponse(BaseModel):
    """A tuning job: state queued | running | succeeded | failed | cancelled, its progress and result."""

    model_config = ConfigDict(extra="allow")
    status: Literal["success", "accepted"] = "success"
    job_id: str
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    experiment_name: str | None
    progress: JobProgress
    result: dict[str, Any] | None = None
    error: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    mlflow_parent_run_id: str | None = None


class JobListQuery(_Request):
    model_config = ConfigDict(extra="forbid", strict=False)  # query strings arrive as text
    limit: int = Field(default=20, ge=1, le=500)
    offset: int = Field(default=0, ge=0)
    state: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None


class JobList(BaseModel):
    status: Literal["success"] = "success"
    items: list[JobResponse]
    total: int
    limit: int
    offset: int


class TrainRequest(DataFields):
    """Train one model with fixed hyperparameters (plus num_boost_round, early_stopping_rounds)."""

    params: dict[str, Any] = Field(default_factory=lambda: {"eta": 0.1, "max_depth": 6, "num_boost_round": 100},
                                   description="XGBoost parameters, constants only")
    experiment_name: str = Field(default="xgboost_training", min_length=1, max_length=250)
    promote: bool = False
    force: bool = False


class TrainResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["success"]
    model_version: int
    validation: dict[str, float]
    holdout: dict[str, float]
    promotion: Promotion
    mlflow: dict[str, Any]


class PromoteRequest(_Request):
    version: int = Field(ge=1, description="registry version of utility_risk_model")
    force: bool = False


class PromoteResponse(Promotion):
    version: int
