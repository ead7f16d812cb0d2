"""What a sweep records beyond its trials: each finished trial as a point of the objectives, and where seeded trials
came from. (A multi-objective sweep's Pareto front is logged after its answer: seedcore.promotion.followups.)"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Mapping, Sequence

from mlflow import MlflowClient
from mlflow.entities import Param

from seedcore.tuning.objectives import Objective
from seedcore.tuning.trainable import DONE_TRAINING
from seedcore.tuning.warmstart import TAG_SOURCE, WarmStart

log = logging.getLogger(__name__)


def trial_points(grid, objectives: Sequence[Objective]) -> list[dict]:
    """One point per trial that trained to the end: its trial id and its value of every objective."""
    points = []
    for result in grid:
        metrics = result.metrics or {}
        if result.error is not None or not metrics.get(DONE_TRAINING):
            continue
        values = {o.metric: float(metrics[o.metric]) for o in objectives if o.metric in metrics}
        values.update({k: float(metrics[k]) for k in ("auc", "logloss", "model_bytes", "predict_us", "training_time")
                       if k in metrics})
        if all(math.isfinite(values.get(o.metric, math.nan)) for o in objectives):
            points.append({"trial_id": metrics["trial_id"], **values})
    return points


def log_warm_start(client: MlflowClient, parent: str, warm: WarmStart, grid, run_ids: Mapping[str, str]) -> list[str]:
    """Parent params + a sources artifact; tag each trial that ran a seeded config with its source.

    Returns the trial ids that ran a seeded config (with scored past trials, TPE re-runs only the best).
    """
    client.log_batch(parent, params=[Param("warm_start.mode", warm.mode), Param("warm_start.seeded", str(warm.seeded))])
    if warm.sources:
        client.log_dict(parent, {"mode": warm.mode, "scored": bool(warm.rewards), "sources": warm.sources},
                        "warm_start.json")
    reran = warm.rerun if warm.rewards else warm.points
    seeded = []
    for result in grid:
        trial_id = (result.metrics or {}).get("trial_id")
        index = match_point(result.config or {}, reran)
        if trial_id in run_ids and index is not None:
            client.set_tag(run_ids[trial_id], TAG_SOURCE, json.dumps(warm.sources[index], default=str)[:5000])
            seeded.append(trial_id)
    return seeded


def match_point(config: Mapping[str, Any], points: Sequence[Mapping[str, Any]]) -> int | None:
    """The index of the point whose every value the config has, or None."""
    for i, point in enumerate(points):
        if all(_same(config.get(k), v) for k, v in point.items()):
            return i
    return None


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b
