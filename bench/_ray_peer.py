"""Peer: plain Ray Tune as its docs show it, with Ray's MLflowLoggerCallback and XGBoost report callback.

Everything is Ray Tune's default except what the comparison fixes: the same search space, trial
budget and ASHA schedule (grace period, reduction factor) as ours, the same data and split, and a
results directory inside the bench's workspace instead of ~/ray_results.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from pathlib import Path

import xgboost as xgb
from ray import cloudpickle, tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.integration.xgboost import TuneReportCheckpointCallback
from ray.tune.schedulers import ASHAScheduler

from bench._workspace import load_split, plain_tune_env
from seedcore.tuning.spaces import EARLY_STOPPING_ROUNDS, NUM_BOOST_ROUND, TRAINING_KEYS

# Ray's workers may not have the repository root on sys.path: ship this module's functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

METRIC = "validation-auc"  # what TuneReportCheckpointCallback names xgboost's eval "validation" / "auc"


def train_fn(config: dict, data) -> None:
    """The trainable a Ray Tune user writes: xgb.train with Ray's report callback (every round)."""
    params = {k: v for k, v in config.items() if k not in TRAINING_KEYS}
    names = list(data.feature_names)
    dtrain = xgb.DMatrix(data.x_train, label=data.y_train, feature_names=names)
    dvalid = xgb.DMatrix(data.x_valid, label=data.y_valid, feature_names=names)
    xgb.train(params, dtrain, num_boost_round=int(config[NUM_BOOST_ROUND]), evals=[(dvalid, "validation")],
              early_stopping_rounds=config.get(EARLY_STOPPING_ROUNDS), verbose_eval=False,
              callbacks=[TuneReportCheckpointCallback()])


def ray_tune_sweep(data_path: Path, space: dict, num_samples: int, grace_period: int, reduction_factor: float,
                   tracking_uri: str, experiment_name: str, storage_path: Path) -> dict:
    """Load, split, tune with MLflow logging; returns wall seconds and the best validation AUC."""
    started = time.perf_counter()
    with plain_tune_env(), contextlib.redirect_stdout(io.StringIO()):  # Tune's progress tables, not timed
        dataset = load_split(data_path)
        max_t = int(space[NUM_BOOST_ROUND])
        tuner = tune.Tuner(
            tune.with_parameters(train_fn, data=dataset),
            param_space=space,
            tune_config=tune.TuneConfig(metric=METRIC, mode="max", num_samples=num_samples,
                                        scheduler=ASHAScheduler(max_t=max_t, grace_period=grace_period,
                                                                reduction_factor=reduction_factor)),
            run_config=tune.RunConfig(name=experiment_name, storage_path=str(storage_path),
                                      callbacks=[MLflowLoggerCallback(tracking_uri=tracking_uri,
                                                                      experiment_name=experiment_name)]),
        )
        grid = tuner.fit()
        best = grid.get_best_result()
    return {"seconds": time.perf_counter() - started, "best_auc": float(best.metrics[METRIC]),
            "trials": len(grid), "errors": sum(1 for r in grid if r.error is not None)}
