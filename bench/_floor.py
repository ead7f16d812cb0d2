"""Compute floors: the same XGBoost work with no tuner and no logging around it."""

from __future__ import annotations

import time

import numpy as np
import xgboost as xgb
from ray.tune.search.sample import Domain

from seedcore.datasets import Dataset
from seedcore.tuning.spaces import EARLY_STOPPING_ROUNDS, NUM_BOOST_ROUND, TRAINING_KEYS


def sample_configs(space: dict, n: int, seed: int = 0) -> list[dict]:
    """`n` configs drawn from a Ray Tune space (constants kept as they are)."""
    rng = np.random.default_rng(seed)
    return [{k: (v.sample(random_state=rng) if isinstance(v, Domain) else v) for k, v in space.items()}
            for _ in range(n)]


def train_one(config: dict, dtrain: xgb.DMatrix, dvalid: xgb.DMatrix, nthread: int | None) -> xgb.Booster:
    params = {k: v for k, v in config.items() if k not in TRAINING_KEYS}
    if nthread:
        params["nthread"] = nthread
    return xgb.train(params, dtrain, num_boost_round=int(config.get(NUM_BOOST_ROUND, 100)),
                     evals=[(dvalid, "validation")], early_stopping_rounds=config.get(EARLY_STOPPING_ROUNDS),
                     verbose_eval=False)


def dmatrices(data: Dataset) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    names = list(data.feature_names)
    return (xgb.DMatrix(data.x_train, label=data.y_train, feature_names=names),
            xgb.DMatrix(data.x_valid, label=data.y_valid, feature_names=names))


def train_sequentially(configs: list[dict], data: Dataset, nthread: int | None) -> float:
    """Seconds to train `configs` one after another on `data` (DMatrix construction included)."""
    started = time.perf_counter()
    dtrain, dvalid = dmatrices(data)
    for config in configs:
        train_one(config, dtrain, dvalid, nthread)
    return time.perf_counter() - started
