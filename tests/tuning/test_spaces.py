"""Search spaces and tune configs: the guide's presets, custom specs in both forms, and invalid input."""

from __future__ import annotations

import numpy as np
import pytest
from ray import tune
from ray.tune.search.sample import Categorical, Domain, Float, Integer, Quantized

from seedcore.errors import BudgetError, ValidationError
from seedcore.tuning import SweepRequest, plan_sweep
from seedcore.tuning.spaces import (FIXED_PARAMS, SPACES, TUNE_CONFIGS, TuneSettings, max_rounds, resolve_space,
                                    resolve_tune_config)

pytestmark = pytest.mark.unit

CAPS = {"max_trials": 200, "max_time_budget_s": 4 * 3600}


def spec(value):
    """A domain as a comparable tuple: (kind, lower, upper[, q]) or ("choice", [...]); constants as is."""
    if isinstance(value, Categorical):
        return ("choice", list(value.categories))
    if not isinstance(value, Domain):
        return value
    sampler = value.get_sampler()
    q = sampler.q if isinstance(sampler, Quantized) else None
    base = sampler.sampler if q is not None else sampler
    log = type(base).__name__ == "_LogUniform"
    kind = {(Float, False): "uniform", (Float, True): "loguniform",
            (Integer, False): "randint", (Integer, True): "lograndint"}[(type(value), log)]
    if q is not None:
        return ("q" + kind, value.lower, value.upper, q)
    return (kind, value.lower, value.upper)


def specs(space: dict) -> dict:
    return {key: spec(value) for key, value in space.items()}


# The guide's "Search Space Configurations" section, transcribed.
GUIDE_SPACES = {
    "conservative": {
        "eta": ("loguniform", 5e-2, 1.5e-1),
        "max_depth": ("randint", 4, 8),
        "subsample": ("uniform", 0.7, 0.9),
        "colsample_bytree": ("uniform", 0.7, 0.9),
        "lambda": ("uniform", 1.0, 3.0),
        "alpha": ("uniform", 0.0, 2.0),
        "num_boost_round": 20,
        "early_stopping_rounds": 5,
    },
    "default": {
        "eta": ("loguniform", 1e-2, 2e-1),
        "max_depth": ("randint", 4, 11),
        "subsample": ("uniform", 0.6, 0.9),
        "colsample_bytree": ("uniform", 0.6, 0.9),
        "lambda": ("uniform", 1.0, 4.0),
        "alpha": ("uniform", 0.0, 3.0),
        "num_boost_round": 200,
    },
    "aggressive": {
        "eta": ("loguniform", 1e-3, 3e-1),
        "max_depth": ("randint", 3, 12),
        "subsample": ("uniform", 0.5, 1.0),
        "colsample_bytree": ("uniform", 0.5, 1.0),
        "colsample_bylevel": ("uniform", 0.5, 1.0),
        "lambda": ("uniform", 0.1, 5.0),
        "alpha": ("uniform", 0.0, 5.0),
        "gamma": ("uniform", 0.0, 1.0),
        "min_child_weight": ("uniform", 1.0, 10.0),
        "num_boost_round": ("randint", 100, 300),
    },
}
# Values each integer range can take, from the guide's comments ("4 to 7", "100 to 299", ...).
GUIDE_INTEGER_VALUES = {
    ("conservative", "max_depth"): set(range(4, 8)),
    ("default", "max_depth"): set(range(4, 11)),
    ("aggressive", "max_depth"): set(range(3, 12)),
    ("aggressive", "num_boost_round"): (100, 299),
}
# Trials and time budget from the guide; concurrency and ASHA's schedule are ours (the guide is silent).
GUIDE_TUNE_CONFIGS = {
    "conservative": TuneSettings(num_samples=5, time_budget_s=600, max_concurrent_trials=2, grace_period=5,
                                 reduction_factor=2, search_alg="random"),
    "default": TuneSettings(num_samples=50, time_budget_s=3600, max_concurrent_trials=4, grace_period=10,
                            reduction_factor=3, search_alg="tpe"),
    "aggressive": TuneSettings(num_samples=100, time_budget_s=7200, max_concurrent_trials=8, grace_period=20,
                               reduction_factor=3, search_alg="tpe"),
}  # search_alg is ours (the guide names none): chosen per preset by measurement

# The guide's "Custom Search Space" examples, in both forms.
GUIDE_DICT_SPACE = {
    "objective": "binary:logistic",
    "eval_metric": ["logloss", "auc"],
    "tree_method": "hist",
    "eta": {"type": "loguniform", "lower": 0.01, "upper": 0.3},
    "max_depth": {"type": "randint", "lower": 3, "upper": 8},
    "subsample": {"type": "uniform", "lower": 0.7, "upper": 1.0},
    "colsample_bytree": {"type": "uniform", "lower": 0.7, "upper": 1.0},
    "lambda": {"type": "uniform", "lower": 0.1, "upper": 3.0},
    "alpha": {"type": "uniform", "lower": 0.0, "upper": 2.0},
    "num_boost_round": 100,
    "early_stopping_rounds": 10,
}


def guide_ray_space():
    return {
        "objective": "binary:logistic",
        "eval_metric": ["logloss", "auc"],
        "tree_method": "hist",
        "eta": tune.loguniform(0.01, 0.3),
        "max_depth": tune.randint(3, 8),
        "subsample": tune.uniform(0.7, 1.0),
        "colsample_bytree": tune.uniform(0.7, 1.0),
        "lambda": tune.uniform(0.1, 3.0),
        "alpha": tune.uniform(0.0, 2.0),
        "num_boost_round": 100,
        "early_stopping_rounds": 10,
    }


@pytest.mark.parametrize("name", sorted(GUIDE_SPACES))
def test_preset_space_is_the_guides(name):
    assert specs(SPACES[name]) == GUIDE_SPACES[name]
    resolved = resolve_space(name, None)
    assert specs(resolved) == {**FIXED_PARAMS, **GUIDE_SPACES[name]}
    assert resolved["objective"] == "binary:logistic" and resolved["eval_metric"] == ["logloss", "auc"]


def test_default_space_and_config_when_none_named():
    assert specs(resolve_space(None, None)) == {**FIXED_PARAMS, **GUIDE_SPACES["default"]}
    assert resolve_tune_config(None, None, **CAPS) == GUIDE_TUNE_CONFIGS["default"]


@pytest.mark.parametrize("name", sorted(GUIDE_SPACES))
def test_preset_samples_stay_in_the_guides_ranges(name):
    rng = np.random.RandomState(0)
    for key, value in SPACES[name].items():
        if not isinstance(value, Domain):
            continue
        samples = value.sample(size=2000, random_state=rng)
        expected = GUIDE_INTEGER_VALUES.get((name, key))
        if isinstance(expected, set):
            assert set(samples) == expected, key
        elif isinstance(expected, tuple):
            assert min(samples) >= expected[0] and max(samples) <= expected[1], key
        else:
            assert min(samples) >= value.lower and max(samples) <= value.upper, key


@pytest.mark.parametrize("name", sorted(GUIDE_TUNE_CONFIGS))
def test_preset_tune_config(name):
    config = resolve_tune_config(name, None, **CAPS)
    assert config == TUNE_CONFIGS[name] == GUIDE_TUNE_CONFIGS[name]
    # ASHA can only prune if its first rung comes before the preset space's last round.
    assert config.grace_period < max_rounds(SPACES[name])


def test_dictionary_form_equals_ray_tune_objects():
    from_dict = resolve_space(None, GUIDE_DICT_SPACE)
    from_ray = resolve_space(None, guide_ray_space())
    assert specs(from_dict) == specs(from_ray)
    assert specs(from_dict) == {
        **FIXED_PARAMS,
        "eta": ("loguniform", 0.01, 0.3), "max_depth": ("randint", 3, 8), "subsample": ("uniform", 0.7, 1.0),
        "colsample_bytree": ("uniform", 0.7, 1.0), "lambda": ("uniform", 0.1, 3.0), "alpha": ("uniform", 0.0, 2.0),
        "num_boost_round": 100, "early_stopping_rounds": 10,
    }


def test_every_dictionary_type():
    space = resolve_space(None, {
        "eta": {"type": "loguniform", "lower": 0.02, "upper": 0.2},
        "subsample": {"type": "uniform", "lower": 0.6, "upper": 0.95},
        "max_depth": {"type": "randint", "lower": 2, "upper": 6},
        "min_child_weight": {"type": "quniform", "lower": 1.0, "upper": 5.0, "q": 0.5},
        "grow_policy": {"type": "choice", "values": ["depthwise", "lossguide"]},
        "gamma": 0.25,
        "num_boost_round": 12,
    })
    assert specs(space) == {
        **FIXED_PARAMS,
        "eta": ("loguniform", 0.02, 0.2), "subsample": ("uniform", 0.6, 0.95), "max_depth": ("randint", 2, 6),
        "min_child_weight": ("quniform", 1.0, 5.0, 0.5), "grow_policy": ("choice", ["depthwise", "lossguide"]),
        "gamma": 0.25, "num_boost_round": 12,
    }
    samples = space["min_child_weight"].sample(size=500, random_state=np.random.RandomState(1))
    assert set(samples) <= {1.0 + 0.5 * i for i in range(9)}


def test_custom_tune_config_overrides_the_preset():
    custom = {"num_samples": 25, "max_concurrent_trials": 4, "time_budget_s": 1800, "grace_period": 10,
              "reduction_factor": 2}
    assert resolve_tune_config("conservative", custom, **CAPS) == TuneSettings(
        num_samples=25, time_budget_s=1800.0, max_concurrent_trials=4, grace_period=10, reduction_factor=2.0)
    partial = resolve_tune_config("aggressive", {"num_samples": 7, "seed": 3}, **CAPS)
    assert partial == TuneSettings(num_samples=7, time_budget_s=7200, max_concurrent_trials=8, grace_period=20,
                                   reduction_factor=3, seed=3, search_alg="tpe")


@pytest.mark.parametrize("space", [
    {"num_boost_round": 30},
    {"num_boost_round": tune.randint(10, 31)},
    {"num_boost_round": tune.quniform(10, 30, 10)},
    {"num_boost_round": {"type": "quniform", "lower": 10, "upper": 30, "q": 5}},
    {"num_boost_round": tune.qrandint(10, 30, 10)},  # qrandint's upper bound is inclusive for q > 1
    {"num_boost_round": tune.choice([10, 30])},
], ids=["constant", "randint", "quniform", "dict-quniform", "qrandint", "choice"])
def test_max_rounds_is_the_largest_round_a_trial_can_run(space):
    """ASHA's max_t comes from this; one too few and the longest trials are cut before their final report."""
    resolved = resolve_space(None, space)
    assert max_rounds(resolved) == 30
    domain = resolved["num_boost_round"]
    if isinstance(domain, Domain):
        assert max(domain.sample(size=500, random_state=np.random.RandomState(0))) == 30


SPACE = "custom_search_space"
INVALID_SPACES = [
    ({"eta": {"type": "normal", "lower": 0.1, "upper": 0.2}}, f"{SPACE}.eta.type"),
    ({"eta": {"lower": 0.1, "upper": 0.2}}, f"{SPACE}.eta.type"),
    ({"eta": {"type": "uniform", "lower": 0.3, "upper": 0.1}}, f"{SPACE}.eta.lower"),
    ({"eta": {"type": "loguniform", "lower": 0.1, "upper": 0.1}}, f"{SPACE}.eta.lower"),
    ({"max_depth": {"type": "randint", "lower": 8, "upper": 4}}, f"{SPACE}.max_depth.lower"),
    ({"eta": {"type": "loguniform", "lower": 0.0, "upper": 0.3}}, f"{SPACE}.eta.lower"),
    ({"eta": {"type": "uniform", "lower": "0.1", "upper": 0.3}}, f"{SPACE}.eta.lower"),
    ({"eta": {"type": "uniform", "lower": 0.1}}, f"{SPACE}.eta.upper"),
    ({"eta": {"type": "uniform", "lower": 0.1, "upper": float("inf")}}, f"{SPACE}.eta.upper"),
    ({"gamma": {"type": "quniform", "lower": 0.0, "upper": 1.0}}, f"{SPACE}.gamma.q"),
    ({"gamma": {"type": "quniform", "lower": 0.0, "upper": 1.0, "q": 0}}, f"{SPACE}.gamma.q"),
    ({"grow_policy": {"type": "choice", "values": []}}, f"{SPACE}.grow_policy.values"),
    ({"learning_rat": 0.1}, f"{SPACE}.learning_rat"),
    ({"n_estimators": {"type": "randint", "lower": 10, "upper": 20}}, f"{SPACE}.n_estimators"),
    ({"nthread": 4}, f"{SPACE}.nthread"),
    ({"subsample": {"type": "uniform", "lower": 0.5, "upper": 1.5}}, f"{SPACE}.subsample"),
    ({"eta": -0.1}, f"{SPACE}.eta"),
    ({"max_depth": tune.randint(3, 100)}, f"{SPACE}.max_depth"),
    ({"colsample_bytree": tune.uniform(0.0, 2.0)}, f"{SPACE}.colsample_bytree"),
    ({"eta": tune.randn(0.1, 0.01)}, f"{SPACE}.eta"),
    ({"eta": "fast"}, f"{SPACE}.eta"),
    ({"eta": True}, f"{SPACE}.eta"),
    ({"num_boost_round": 0}, f"{SPACE}.num_boost_round"),
    ({"early_stopping_rounds": 2.5}, f"{SPACE}.early_stopping_rounds"),
    ({"objective": "reg:squarederror"}, f"{SPACE}.objective"),
    ({"eval_metric": ["rmse"]}, f"{SPACE}.eval_metric"),
    ({"tree_method": {"type": "choice", "values": ["hist", "gpu_magic"]}}, f"{SPACE}.tree_method"),
    # Integer XGBoost parameters must get integers: xgboost.train refuses max_depth='5.0' in every trial.
    ({"max_depth": {"type": "quniform", "lower": 3, "upper": 8, "q": 1}}, f"{SPACE}.max_depth"),
    ({"max_depth": tune.uniform(3, 8)}, f"{SPACE}.max_depth"),
    ({"max_depth": 5.0}, f"{SPACE}.max_depth"),
    ({"max_bin": {"type": "choice", "values": [64.0, 128.0]}}, f"{SPACE}.max_bin"),
    ({}, SPACE),
    ([("eta", 0.1)], SPACE),
]


@pytest.mark.parametrize("custom, field", INVALID_SPACES, ids=[f for _, f in INVALID_SPACES])
def test_invalid_search_space_names_the_field(custom, field):
    with pytest.raises(ValidationError) as err:
        resolve_space(None, custom)
    assert err.value.field == field
    assert err.value.status_code == 400 and err.value.message


TUNE = "custom_tune_config"
INVALID_TUNE_CONFIGS = [
    ("default", {"num_samples": 0}, ValidationError, f"{TUNE}.num_samples"),
    ("default", {"num_samples": 2.5}, ValidationError, f"{TUNE}.num_samples"),
    ("default", {"num_samples": "5"}, ValidationError, f"{TUNE}.num_samples"),
    ("default", {"max_concurrent_trials": 0}, ValidationError, f"{TUNE}.max_concurrent_trials"),
    ("default", {"time_budget_s": 0}, ValidationError, f"{TUNE}.time_budget_s"),
    ("default", {"time_budget_s": float("nan")}, ValidationError, f"{TUNE}.time_budget_s"),
    ("default", {"grace_period": True}, ValidationError, f"{TUNE}.grace_period"),
    ("default", {"reduction_factor": 1}, ValidationError, f"{TUNE}.reduction_factor"),
    ("default", {"trials": 5}, ValidationError, f"{TUNE}.trials"),
    ("default", [("num_samples", 5)], ValidationError, TUNE),
    ("huge", None, ValidationError, "config_type"),
    # Budget caps (CAPS: 200 trials, 4 h).
    ("default", {"num_samples": 201}, BudgetError, f"{TUNE}.num_samples"),
    ("default", {"time_budget_s": 4 * 3600 + 1}, BudgetError, f"{TUNE}.time_budget_s"),
]


@pytest.mark.parametrize("config_type, custom, error, field", INVALID_TUNE_CONFIGS,
                         ids=[f"{c}-{f}" for c, _, _, f in INVALID_TUNE_CONFIGS])
def test_invalid_tune_config_names_the_field(config_type, custom, error, field):
    with pytest.raises(error) as err:
        resolve_tune_config(config_type, custom, **CAPS)
    assert type(err.value) is error
    assert err.value.field == field


def test_unknown_space_type_names_the_field():
    with pytest.raises(ValidationError) as err:
        resolve_space("huge", None)
    assert err.value.field == "space_type"


@pytest.mark.parametrize("request_fields, caps, field", [
    ({"custom_tune_config": {"num_samples": 4}}, {"max_trials": 3}, f"{TUNE}.num_samples"),
    ({"custom_tune_config": {"time_budget_s": 120}}, {"max_time_budget_s": 60}, f"{TUNE}.time_budget_s"),
    # A preset over the cap: the caller chose config_type, not a custom num_samples.
    ({"config_type": "aggressive"}, {"max_trials": 50}, "config_type"),
    ({"config_type": "default"}, {"max_time_budget_s": 1800}, "config_type"),
], ids=["num_samples", "time_budget_s", "preset-trials", "preset-time"])
def test_budget_over_the_settings_cap(settings, request_fields, caps, field):
    with pytest.raises(BudgetError) as err:
        plan_sweep(settings.replace(**caps), SweepRequest(**request_fields))
    assert err.value.field == field
    assert err.value.status_code == 400


def test_plan_within_the_caps(settings):
    plan = plan_sweep(settings.replace(max_trials=5, max_time_budget_s=600),
                      SweepRequest(space_type="conservative", config_type="conservative"))
    assert plan.tune == GUIDE_TUNE_CONFIGS["conservative"]
    assert plan.max_t == 20
    assert specs(plan.space) == {**FIXED_PARAMS, **GUIDE_SPACES["conservative"]}


@pytest.mark.parametrize("config_type", ["default", "aggressive"])
def test_preset_max_trials_trims_a_preset_but_not_a_callers_num_samples(settings, config_type):
    trimmed = plan_sweep(settings.replace(preset_max_trials=3), SweepRequest(config_type=config_type))
    assert trimmed.tune.num_samples == 3
    assert trimmed.tune.time_budget_s == TUNE_CONFIGS[config_type].time_budget_s  # only the trial count moves
    asked = plan_sweep(settings.replace(preset_max_trials=3),
                       SweepRequest(config_type=config_type, custom_tune_config={"num_samples": 7}))
    assert asked.tune.num_samples == 7  # the caller's own number is not trimmed


def test_a_trimmed_preset_is_still_held_to_the_trial_cap(settings):
    with pytest.raises(BudgetError) as err:  # trimmed to 60, still over SEEDCORE_MAX_TRIALS=50
        plan_sweep(settings.replace(preset_max_trials=60, max_trials=50), SweepRequest(config_type="aggressive"))
    assert err.value.field == "config_type"
    within = plan_sweep(settings.replace(preset_max_trials=40, max_trials=50), SweepRequest(config_type="aggressive"))
    assert within.tune.num_samples == 40
