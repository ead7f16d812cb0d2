"""Search spaces and tune configs: the guide's presets, custom specs, and their validation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ray import tune
from ray.tune.search.sample import Categorical, Domain, Float, Integer, Quantized

from seedcore.errors import BudgetError, ValidationError
from seedcore.vocabulary import SearchAlgorithm

# Keys we handle ourselves rather than passing to xgboost.train's params.
NUM_BOOST_ROUND = "num_boost_round"
EARLY_STOPPING_ROUNDS = "early_stopping_rounds"
TRAINING_KEYS = (NUM_BOOST_ROUND, EARLY_STOPPING_ROUNDS)

# Always trained this way: a binary classifier scored by AUC (last, so early stopping follows it).
FIXED_PARAMS = {"objective": "binary:logistic", "eval_metric": ["logloss", "auc"], "tree_method": "hist", "seed": 0}

CONSERVATIVE_SPACE = {
    "eta": tune.loguniform(5e-2, 1.5e-1),
    "max_depth": tune.randint(4, 8),
    "subsample": tune.uniform(0.7, 0.9),
    "colsample_bytree": tune.uniform(0.7, 0.9),
    "lambda": tune.uniform(1.0, 3.0),
    "alpha": tune.uniform(0.0, 2.0),
    "num_boost_round": 20,
    "early_stopping_rounds": 5,
}
DEFAULT_SPACE = {
    "eta": tune.loguniform(1e-2, 2e-1),
    "max_depth": tune.randint(4, 11),
    "subsample": tune.uniform(0.6, 0.9),
    "colsample_bytree": tune.uniform(0.6, 0.9),
    "lambda": tune.uniform(1.0, 4.0),
    "alpha": tune.uniform(0.0, 3.0),
    "num_boost_round": 200,
}
AGGRESSIVE_SPACE = {
    "eta": tune.loguniform(1e-3, 3e-1),
    "max_depth": tune.randint(3, 12),
    "subsample": tune.uniform(0.5, 1.0),
    "colsample_bytree": tune.uniform(0.5, 1.0),
    "colsample_bylevel": tune.uniform(0.5, 1.0),
    "lambda": tune.uniform(0.1, 5.0),
    "alpha": tune.uniform(0.0, 5.0),
    "gamma": tune.uniform(0.0, 1.0),
    "min_child_weight": tune.uniform(1.0, 10.0),
    "num_boost_round": tune.randint(100, 300),
}
SPACES = {"conservative": CONSERVATIVE_SPACE, "default": DEFAULT_SPACE, "aggressive": AGGRESSIVE_SPACE}


@dataclass(frozen=True)
class TuneSettings:
    """How many trials, how long, how many at once, and ASHA's schedule."""

    num_samples: int
    time_budget_s: float
    max_concurrent_trials: int
    grace_period: int
    reduction_factor: float
    seed: int | None = None
    search_alg: str = "random"

    def as_dict(self) -> dict:
        return asdict(self)


TUNE_CONFIGS = {
    # search_alg per preset chosen by measurement (bench/RESULTS.md, "search algorithms"): 5 trials are
    # fewer than TPE's random start-up trials, so the conservative preset keeps plain random search.
    "conservative": TuneSettings(num_samples=5, time_budget_s=600, max_concurrent_trials=2, grace_period=5,
                                 reduction_factor=2, search_alg="random"),
    "default": TuneSettings(num_samples=50, time_budget_s=3600, max_concurrent_trials=4, grace_period=10,
                            reduction_factor=3, search_alg="tpe"),
    "aggressive": TuneSettings(num_samples=100, time_budget_s=7200, max_concurrent_trials=8, grace_period=20,
                               reduction_factor=3, search_alg="tpe"),
}

# (low, high, integer) for each XGBoost parameter we know; None = unbounded on that side.
_NUMERIC = {
    "eta": (0.0, None, False), "learning_rate": (0.0, None, False), "gamma": (0.0, None, False),
    "min_split_loss": (0.0, None, False), "max_depth": (0, 64, True), "min_child_weight": (0.0, None, False),
    "max_delta_step": (0.0, None, False), "subsample": (0.0, 1.0, False), "colsample_bytree": (0.0, 1.0, False),
    "colsample_bylevel": (0.0, 1.0, False), "colsample_bynode": (0.0, 1.0, False), "lambda": (0.0, None, False),
    "reg_lambda": (0.0, None, False), "alpha": (0.0, None, False), "reg_alpha": (0.0, None, False),
    "scale_pos_weight": (0.0, None, False), "max_leaves": (0, None, True), "max_bin": (2, 4096, True),
    "num_parallel_tree": (1, 100, True), "max_cat_to_onehot": (1, None, True), "max_cat_threshold": (1, None, True),
    "base_score": (0.0, 1.0, False), "seed": (0, None, True), "rate_drop": (0.0, 1.0, False),
    "skip_drop": (0.0, 1.0, False), "verbosity": (0, 3, True),
    NUM_BOOST_ROUND: (1, 10_000, True), EARLY_STOPPING_ROUNDS: (1, 10_000, True),
}
_CATEGORICAL = {
    "objective": {"binary:logistic"}, "tree_method": {"hist", "approx", "exact", "auto"},
    "grow_policy": {"depthwise", "lossguide"}, "booster": {"gbtree", "dart"},
    "sampling_method": {"uniform"}, "sample_type": {"uniform", "weighted"}, "normalize_type": {"tree", "forest"},
    "one_drop": {0, 1, True, False}, "eval_metric": None, "monotone_constraints": None,
    "interaction_constraints": None,
}
KNOWN_PARAMS = frozenset(_NUMERIC) | frozenset(_CATEGORICAL)
_DICT_TYPES = {"uniform", "loguniform", "randint", "quniform", "choice"}


def resolve_space(space_type: str | None, custom: Mapping[str, Any] | None,
                  field: str = "custom_search_space") -> dict:
    """The search space to sample: a preset by name, or a validated custom one (dict or Ray objects)."""
    if custom is not None:
        if not isinstance(custom, Mapping) or not custom:
            raise ValidationError(f"{field} must be a non-empty object", field=field)
        space = {key: _to_domain(key, spec, f"{field}.{key}") for key, spec in custom.items()}
    else:
        name = space_type or "default"
        if name not in SPACES:
            raise ValidationError(f"unknown space_type {name!r}; choose one of {sorted(SPACES)}", field="space_type")
        space = dict(SPACES[name])
    for key, value in space.items():
        _check_param(key, value, f"{field}.{key}")
    return {**FIXED_PARAMS, **{k: v for k, v in space.items() if k != "eval_metric"}}


def _to_domain(key: str, spec: Any, where: str):
    """A dictionary-form spec ({"type": ..., "lower": ..., "upper": ...}) to a Ray Tune domain."""
    if key == "nthread":
        raise ValidationError("nthread is set from the CPUs each trial is given", field=where)
    if key not in KNOWN_PARAMS:
        raise ValidationError(f"{key!r} is not an XGBoost parameter we accept", field=where)
    if not isinstance(spec, Mapping):
        return spec  # a constant or a Ray Tune object
    kind = spec.get("type")
    if kind not in _DICT_TYPES:
        raise ValidationError(f"unknown type {kind!r}; choose one of {sorted(_DICT_TYPES)}", field=f"{where}.type")
    if kind == "choice":
        values = spec.get("values", spec.get("categories"))
        if not isinstance(values, list) or not values:
            raise ValidationError("choice needs a non-empty list 'values'", field=f"{where}.values")
        return tune.choice(values)
    lower, upper = _bound(spec, "lower", where), _bound(spec, "upper", where)
    if lower >= upper:
        raise ValidationError(f"lower ({lower}) must be below upper ({upper})", field=f"{where}.lower")
    if kind == "uniform":
        return tune.uniform(lower, upper)
    if kind == "loguniform":
        if lower <= 0:
            raise ValidationError("loguniform needs lower > 0", field=f"{where}.lower")
        return tune.loguniform(lower, upper)
    if kind == "randint":
        return tune.randint(int(lower), int(upper))
    q = _bound(spec, "q", where)
    if q <= 0:
        raise ValidationError("quniform needs q > 0", field=f"{where}.q")
    return tune.quniform(lower, upper, q)


def _bound(spec: Mapping, name: str, where: str) -> float:
    value = spec.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number, got {value!r}", field=f"{where}.{name}")
    return value


def _check_param(key: str, value: Any, where: str) -> None:
    """Refuse unknown parameters and values outside what XGBoost accepts."""
    if key not in KNOWN_PARAMS:
        raise ValidationError(f"{key!r} is not an XGBoost parameter we accept", field=where)
    if key in _CATEGORICAL:
        allowed = _CATEGORICAL[key]
        values = value.categories if isinstance(value, Categorical) else [value]
        if allowed is not None and any(v not in allowed for v in values):
            raise ValidationError(f"{key} must be one of {sorted(map(str, allowed))}", field=where)
        if key == "eval_metric" and any(m not in ("auc", "logloss") for m in _as_list(value)):
            raise ValidationError("eval_metric: we always score auc and logloss", field=where)
        return
    low, high, integer = _NUMERIC[key]
    if integer and key not in TRAINING_KEYS and (
            isinstance(value, Float) or any(isinstance(v, float) for v in _extremes(value, where))):
        # xgboost.train refuses e.g. max_depth=5.0 ("expect int"), so every trial would fail.
        raise ValidationError(f"{key} takes integers: give an int, a randint or a choice of ints", field=where)
    for v in _extremes(value, where):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValidationError(f"{key} must be a number, got {v!r}", field=where)
        if (low is not None and v < low) or (high is not None and v > high) or (integer and v != int(v)):
            kind = "an integer" if integer else "a number"
            raise ValidationError(f"{key}={v} is outside the valid range: {kind} in [{low}, {high}]", field=where)


def _extremes(value: Any, where: str) -> list:
    """The smallest and largest value a constant or a domain can take."""
    if isinstance(value, Categorical):
        return list(value.categories)
    if isinstance(value, Integer):
        sampler = value.get_sampler()
        inclusive = isinstance(sampler, Quantized) and sampler.q != 1  # qrandint(lo, hi, q > 1) can give hi
        return [value.lower, value.upper if inclusive else value.upper - 1]
    if isinstance(value, Float):
        return [value.lower, value.upper]
    if isinstance(value, Domain):
        raise ValidationError(f"unsupported Ray Tune domain {type(value).__name__}", field=where)
    return [value]


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def max_rounds(space: Mapping[str, Any]) -> int:
    """The most boosting rounds any trial of this space can run (ASHA's max_t)."""
    return int(max(_extremes(space.get(NUM_BOOST_ROUND, 100), NUM_BOOST_ROUND)))


def resolve_tune_config(config_type: str | None, custom: Mapping[str, Any] | None, *, max_trials: int,
                        max_time_budget_s: float, preset_max_trials: int | None = None) -> TuneSettings:
    """A preset by name (its trials trimmed to `preset_max_trials`), overridden field by field by a custom
    config; capped by the settings."""
    name = config_type or "default"
    if name not in TUNE_CONFIGS:
        raise ValidationError(f"unknown config_type {name!r}; choose one of {sorted(TUNE_CONFIGS)}",
                              field="config_type")
    values = TUNE_CONFIGS[name].as_dict()
    if preset_max_trials is not None:
        values["num_samples"] = min(values["num_samples"], preset_max_trials)
    if custom is not None:
        if not isinstance(custom, Mapping):
            raise ValidationError("custom_tune_config must be an object", field="custom_tune_config")
        for key, value in custom.items():
            values[key] = _check_tune_field(key, value)
    settings = TuneSettings(**values)

    def at_fault(key: str) -> str:  # what the caller set: the custom field, or the preset that brought it
        return f"custom_tune_config.{key}" if key in (custom or {}) else "config_type"

    if settings.num_samples > max_trials:
        raise BudgetError(f"num_samples {settings.num_samples} is over the cap of {max_trials} trials",
                          field=at_fault("num_samples"))
    if settings.time_budget_s > max_time_budget_s:
        raise BudgetError(f"time_budget_s {settings.time_budget_s} is over the cap of {max_time_budget_s} s",
                          field=at_fault("time_budget_s"))
    return settings


_TUNE_FIELDS = {"num_samples": (1, int), "max_concurrent_trials": (1, int), "time_budget_s": (1, float),
                "grace_period": (1, int), "reduction_factor": (1.01, float), "seed": (0, int),
                "search_alg": (None, str)}
# random: Ray Tune's variant generator; tpe: Optuna's TPE sampler (with ASHA, the BOHB idea);
# qmc: Optuna's scrambled Sobol sequence (space-filling, no model).
SEARCH_ALGS = tuple(SearchAlgorithm)


def _check_tune_field(key: str, value: Any):
    where = f"custom_tune_config.{key}"
    if key not in _TUNE_FIELDS:
        raise ValidationError(f"unknown tune config field {key!r}; known: {sorted(_TUNE_FIELDS)}", field=where)
    low, kind = _TUNE_FIELDS[key]
    if key == "seed" and value is None:
        return None
    if key == "search_alg":
        if value not in SEARCH_ALGS:
            raise ValidationError(f"unknown search_alg {value!r}; choose one of {list(SEARCH_ALGS)}", field=where)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{key} must be a number, got {value!r}", field=where)
    if kind is int and value != int(value):
        raise ValidationError(f"{key} must be an integer, got {value!r}", field=where)
    if value < low:
        raise ValidationError(f"{key} must be at least {low}, got {value}", field=where)
    return kind(value)


def describe_space(space: Mapping[str, Any]) -> dict[str, str]:
    """Readable form of a space for the parent run's params (e.g. `loguniform(0.05, 0.15)`)."""
    return {key: _describe(value) for key, value in space.items()}


def _describe(value: Any) -> str:
    if isinstance(value, Categorical):
        return f"choice({value.categories})"
    if isinstance(value, Domain):
        sampler = type(value.get_sampler()).__name__.replace("_", "").lower()
        return f"{type(value).__name__.lower()}[{sampler}]({value.lower}, {value.upper})"
    return repr(value)
