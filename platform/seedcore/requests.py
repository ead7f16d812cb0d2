"""What callers ask for, declared once: the tuning and training requests.

The REST API validates bodies into these models, the job runner stores and reloads them, and the CLI
builds them from its options; nothing else restates their fields.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PRESETS = ("conservative", "default", "aggressive")
Preset = Literal["conservative", "default", "aggressive"]

Name = Field(default="xgboost_tuning", min_length=1, max_length=250, description="MLflow experiment name")


class StrictBody(BaseModel):
    # strict: "promote": "yes" or "version": "3" is the caller's mistake, not something to guess at
    model_config = ConfigDict(extra="forbid", strict=True)


class DataFields(StrictBody):
    data_source: str | None = Field(default=None, description="CSV or Parquet path inside the data dir; "
                                                              "omit for the built-in dataset")
    label_column: str | None = Field(default=None, min_length=1)
    feature_columns: list[str] | None = Field(default=None, min_length=1)


class TuneRequest(DataFields):
    """The guide's tuning request, plus the data source and promotion knobs."""

    space_type: Preset = "default"
    config_type: Preset = "default"
    custom_search_space: dict[str, Any] | None = Field(
        default=None, description='parameter -> constant or {"type": "uniform|loguniform|randint|quniform|choice", '
                                  '"lower": .., "upper": .., "q": .., "values": [..]}')
    custom_tune_config: dict[str, Any] | None = Field(
        default=None, description="num_samples, max_concurrent_trials, time_budget_s, grace_period, "
                                  "reduction_factor, seed")
    experiment_name: str = Name
    promote: bool = Field(default=True, description="promote the winner through the champion gate")
    force: bool = Field(default=False, description="promote even if the champion is better")


class TrainRequest(DataFields):
    """Train one model with fixed hyperparameters (plus num_boost_round, early_stopping_rounds)."""

    params: dict[str, Any] = Field(default_factory=lambda: {"eta": 0.1, "max_depth": 6, "num_boost_round": 100},
                                   description="XGBoost parameters, constants only")
    experiment_name: str = Field(default="xgboost_training", min_length=1, max_length=250)
    promote: bool = False
    force: bool = False


# The sweep runner's name for a tuning request.
SweepRequest = TuneRequest
