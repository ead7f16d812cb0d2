"""XGBoost parameters XGBoost would refuse, or that train a coin-flip model, are a 400 naming the key
(`params.<key>` for train, `custom_search_space.<key>` for tune) before any job, MLflow run or version exists."""

from __future__ import annotations

import time

import pytest

from _tuning import assert_nothing_happened
from seedcore.datasets import BUILTIN_FEATURES
from seedcore.errors import ValidationError
from seedcore.tuning.params_check import check_params
from seedcore.tuning.spaces import resolve_space

pytestmark = pytest.mark.unit

TUNE = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 1}}
FIFTEEN = "(" + ",".join(["1"] * 15) + ")"  # monotone constraints for 15 features; the data has 10

BAD_PARAMS = [  # (parameter, value) XGBoost refuses at its first round, or accepts and learns nothing from
    ("seed", 10**20),
    ("seed", 1e20),
    ("monotone_constraints", "garbage"),
    ("monotone_constraints", FIFTEEN),
    ("interaction_constraints", [["f0", "no_such_feature"]]),
    ("subsample", 0),
    ("colsample_bytree", 0),
    ("colsample_bylevel", 0),
    ("base_score", 0),
    ("base_score", 1),
    ("eta", 0),
]
BAD_SPACES = [  # (parameter, search-space spec) with a boundary or a choice XGBoost refuses
    ("subsample", {"type": "uniform", "lower": 0, "upper": 0.5}),
    ("colsample_bytree", {"type": "uniform", "lower": 0.0, "upper": 1.0}),
    ("base_score", {"type": "uniform", "lower": 0.5, "upper": 1.0}),
    ("interaction_constraints", {"type": "choice", "values": [[["f0", "f1"]], [["f0", "zz"]], [["f2", "f3"]]]}),
    ("monotone_constraints", {"type": "choice", "values": ["(1,0)", "(0,1)", "garbage", "(1)"]}),
    ("monotone_constraints", FIFTEEN),
]


@pytest.mark.parametrize("key,value", BAD_PARAMS, ids=[f"{k}={v!r}"[:40] for k, v in BAD_PARAMS])
def test_train_refuses_a_parameter_naming_it(module_client, module_settings, key, value):
    response = module_client.post("/xgboost/train", json={"params": {"max_depth": 2, "num_boost_round": 3, key: value}})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["field"] == f"params.{key}", response.get_json()
    assert_nothing_happened(module_settings)


@pytest.mark.parametrize("path", ["/xgboost/tune", "/xgboost/tune/submit"])
@pytest.mark.parametrize("key,spec", BAD_SPACES, ids=[f"{k}={v!r}"[:40] for k, v in BAD_SPACES])
def test_tune_refuses_a_space_naming_the_key(module_client, module_settings, path, key, spec):
    body = {**TUNE, "custom_search_space": {"eta": 0.3, "max_depth": 2, "num_boost_round": 3, key: spec}}
    response = module_client.post(path, json=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["field"] == f"custom_search_space.{key}", response.get_json()
    assert_nothing_happened(module_settings)


@pytest.mark.parametrize("path,body", [
    ("/xgboost/train", {"params": {"max_depth": 2, "num_boost_round": 3}}),
    ("/xgboost/tune/submit", TUNE),
    ("/xgboost/tune", TUNE),
])
def test_repeated_feature_columns_are_refused(module_client, module_settings, path, body):
    response = module_client.post(path, json={**body, "feature_columns": ["f0", "f1", "f0"]})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["field"] == "feature_columns"
    assert "f0" in response.get_json()["error"]
    assert_nothing_happened(module_settings)


def test_constraints_are_judged_against_the_requested_features():
    """Constraints fit the features the data gives: the same values fail against other features."""
    pair = resolve_space(None, {"monotone_constraints": "(1,-1)", "interaction_constraints": [["f0", "f1"]]},
                         field="params")
    check_params(pair, ["f0", "f1"], "params")
    with pytest.raises(ValidationError) as err:
        check_params(pair, ["f0", "f2"], "params")
    assert err.value.field == "params.interaction_constraints"
    with pytest.raises(ValidationError) as err:
        check_params(pair, ["f0"], "params")
    assert err.value.field == "params.monotone_constraints"


def test_a_seed_beyond_int64_is_named_even_without_the_api_guard():
    """The API refuses integers over 64 bits in any body; the CLI and library callers reach XGBoost's check."""
    with pytest.raises(ValidationError) as err:
        check_params(resolve_space(None, {"seed": 2**63}, field="params"), BUILTIN_FEATURES, "params")
    assert err.value.field == "params.seed" and "seed" in err.value.message


@pytest.mark.parametrize("preset", ["conservative", "default", "aggressive"])
def test_the_presets_pass_and_the_check_is_cheap(preset):
    space = resolve_space(preset, None)
    check_params(space, BUILTIN_FEATURES, "custom_search_space")  # warm
    started = time.perf_counter()
    check_params(space, BUILTIN_FEATURES, "custom_search_space")
    assert time.perf_counter() - started < 2.0  # milliseconds on an idle machine; generous for a busy one
