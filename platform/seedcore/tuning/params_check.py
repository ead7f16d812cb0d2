"""XGBoost parameters checked before any job, MLflow run or trial exists.

Two checks. Ranges XGBoost accepts but that train a useless model (a coin flip that could be registered
and promoted) are refused: its open ranges are open here. Then XGBoost itself judges the values: one
boosting round on a tiny matrix with the fixed parameters at every corner of the space (milliseconds),
so whatever it would refuse in the first trial (`seed` beyond int64, malformed `monotone_constraints`,
constraints naming unknown features or more features than the data has) is a 400 naming the key.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
from ray.tune.search.sample import Categorical, Domain

from seedcore._xgboost import xgb
from seedcore.datasets import check_request_data
from seedcore.errors import ValidationError
from seedcore.tuning.spaces import FIXED_PARAMS, TRAINING_KEYS, _extremes

# (low, high) XGBoost takes as open: the value must lie strictly inside. None = no bound on that side.
# At 0 a row or column sample is empty and a learning rate learns nothing; a base score of 0 or 1 is an
# infinite logit for binary:logistic.
OPEN_RANGES = {
    "eta": (0.0, None), "learning_rate": (0.0, None), "subsample": (0.0, None), "colsample_bytree": (0.0, None),
    "colsample_bylevel": (0.0, None), "colsample_bynode": (0.0, None), "base_score": (0.0, 1.0),
}
DRY_RUN_ROWS = 16
MAX_DRY_RUNS = 64  # each choice value is tried once; beyond this many, the corners alone are tried
_XGB_NOISE = re.compile(r"^\[[\d:]+\] \S+: (Check failed: [^:]*: )?")


def check_params(space: Mapping[str, Any], feature_names: Sequence[str], field: str) -> None:
    """Refuse parameter values XGBoost would refuse or that train a useless model; 400 naming `field.<key>`.

    `space` is a resolved config or search space (constants and Ray Tune domains), `feature_names` the
    data's features (constraints are checked against them).
    """
    params = {k: v for k, v in space.items() if k not in TRAINING_KEYS}
    for key, value in params.items():
        _check_open_range(key, value, f"{field}.{key}")
    matrix = _tiny_matrix(feature_names)
    for config in _trial_configs(params):
        error = _dry_run(config, matrix)
        if error is not None:
            key = _culprit(params, config, matrix)
            where = f"{field}.{key}" if key else field
            raise ValidationError(f"XGBoost refuses {key or 'these parameters'}: {error}", field=where)


def _check_open_range(key: str, value: Any, where: str) -> None:
    if key not in OPEN_RANGES:
        return
    low, high = OPEN_RANGES[key]
    for v in _extremes(value, where):
        if (low is not None and v <= low) or (high is not None and v >= high):
            upper = "" if high is None else f" and below {high}"
            raise ValidationError(f"{key}={v}: must be above {low}{upper} (at the bound the model learns "
                                  "nothing)", field=where)


def _corner(value: Any, index: int) -> Any:
    """A constant as is; a domain's lowest (index 0) or highest (index -1) value."""
    if isinstance(value, Domain):
        return _extremes(value, "")[index]
    return value


def _trial_configs(params: Mapping[str, Any]) -> list[dict]:
    """Every parameter at its lowest, at its highest, and each other choice value once."""
    low = {k: _corner(v, 0) for k, v in params.items()}
    configs = [low, {k: _corner(v, -1) for k, v in params.items()}]
    for key, value in params.items():
        if isinstance(value, Categorical):
            configs += [{**low, key: choice} for choice in value.categories[1:-1]]
    return configs[:MAX_DRY_RUNS]


def _tiny_matrix(feature_names: Sequence[str]) -> xgb.DMatrix:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(DRY_RUN_ROWS, len(feature_names))).astype(np.float32)
    return xgb.DMatrix(x, np.arange(DRY_RUN_ROWS) % 2, feature_names=list(feature_names))


def _dry_run(config: Mapping[str, Any], matrix: xgb.DMatrix) -> str | None:
    """XGBoost's complaint about one round with `config`, or None when it trains."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xgb.train({**config, "nthread": 1}, matrix, num_boost_round=1)
    except (xgb.core.XGBoostError, ValueError, TypeError) as exc:
        lines = [line for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
        return _XGB_NOISE.sub("", lines[0])[:300]
    return None


def _culprit(params: Mapping[str, Any], config: Mapping[str, Any], matrix: xgb.DMatrix) -> str | None:
    """The parameter XGBoost refuses in `config`: the first refused on its own beside the fixed parameters,
    else the one whose addition makes the config fail (values that only clash together)."""
    for key in params:
        if _dry_run({**FIXED_PARAMS, key: config[key]}, matrix) is not None:
            return key
    so_far = dict(FIXED_PARAMS)
    for key in params:
        so_far[key] = config[key]
        if _dry_run(so_far, matrix) is not None:
            return key
    return None


def check_request_params(settings, request, space: Mapping[str, Any], field: str) -> list[str]:
    """A request's data, checked as a job would load it (header first, then the values in bounded chunks),
    then its parameters against those features.

    Returns the feature names. Everything here is a 400 raised before any job or run exists.
    """
    features = check_request_data(settings, request)
    check_params(space, features, field)
    return features
