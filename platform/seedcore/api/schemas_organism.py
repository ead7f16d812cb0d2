"""Models of the organism endpoints: `energy` in model_info, `/xgboost/history`, `/xgboost/evolution` and its
baselines."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from seedcore.api._http import MAX_INT
from seedcore.request_models import StrictBody
from seedcore.vocabulary import Baseline, values


class Energy(BaseModel):
    """model_info's `energy` (README, "The organism, measured"): cost in CPU-seconds, wall seconds and joules;
    `mem_bytes`; `pair` in nats a day; `net_delta` in joules so far; `break_even_at` (null: never or unknown)."""

    model_config = ConfigDict(extra="allow")
    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    joules: float | None = None
    mem_bytes: int | None = None
    pair: float | None = None
    net_delta: float | None = None
    break_even_at: str | None = None


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=MAX_INT)


class HistoryItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    version: int
    hyperparameters: dict[str, Any]
    dataset: dict[str, Any]
    holdout: dict[str, Any]
    live: list[dict[str, Any]] = Field(description="labelled outcomes by UTC day: n, auc, logloss")
    evaluations: list[dict[str, Any]]
    trigger: str | None
    energy: dict[str, Any] | None


class HistoryResponse(BaseModel):
    status: str
    items: list[HistoryItem]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class EvolutionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str
    sweeps: list[dict[str, Any]] = Field(
        description="per sweep, oldest first (a baseline's job is none of them): accuracy, curve_area, "
                    "trials_to_99, random_order, smartness and smartness_baseline (random_search or random_order), "
                    "trials_saved and adaptability_baseline (paired_cold, same_data_cold or null); with a "
                    "succeeded baseline, random_search and cold_start: {job_id, curve_area, trials_to_99, best}")
    trend: dict[str, Any]


class BaselineRequest(StrictBody):
    """A baseline of a succeeded sweep: the same sweep (data, space, num_samples, seed) run again with warm start
    off and nothing promoted, as a random search (`random_search`) or with the same searcher (`cold_start`, for
    a warm-started sweep). It costs a whole sweep of the same size."""

    job_id: str = Field(min_length=1, max_length=64, description="the succeeded sweep's job id")
    kind: Literal[values(Baseline)]
