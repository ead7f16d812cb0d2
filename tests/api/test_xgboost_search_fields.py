"""Bad search, refit, warm-start and objective fields over REST: a 400 naming the field, nothing started."""

from __future__ import annotations

import pytest

from _tuning import assert_nothing_happened

pytestmark = pytest.mark.unit

GOOD = {"space_type": "conservative", "config_type": "conservative", "experiment_name": "t",
        "custom_tune_config": {"num_samples": 2}}
TWO = [{"metric": "auc", "mode": "max"}, {"metric": "model_bytes", "mode": "min"}]


@pytest.mark.parametrize("changes, field", [
    ({"custom_tune_config": {"num_samples": 2, "search_alg": "bohb"}}, "custom_tune_config.search_alg"),
    ({"custom_tune_config": {"num_samples": 2, "search_alg": ["tpe"]}}, "custom_tune_config.search_alg"),
    ({"refit": "yes"}, "refit"),
    ({"warm_start": "yesterday"}, "warm_start"),
    ({"objectives": [{"metric": "accuracy", "mode": "max"}]}, "objectives.0.metric"),
    ({"objectives": [{"metric": "auc", "mode": "maximise"}]}, "objectives.0.mode"),
    ({"objectives": [{"metric": "auc"}]}, "objectives.0.mode"),
    ({"objectives": []}, "objectives"),
    ({"objectives": [*TWO, {"metric": "auc", "mode": "min"}]}, "objectives.2.metric"),
    ({"objectives": TWO, "select": "pareto"}, "select"),
    ({"select": "knee"}, "select"),
    ({"objectives": TWO, "select": {"size": {"max": 10}}}, "select.size"),
    ({"objectives": TWO, "select": {"model_bytes": {"max": 1, "min": 5}}}, "select.model_bytes"),
])
@pytest.mark.parametrize("path", ["/xgboost/tune", "/xgboost/tune/submit"])
def test_bad_search_fields_are_400s_naming_the_field(module_client, module_settings, path, changes, field):
    response = module_client.post(path, json={**GOOD, **changes})
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["status"] == "error" and body["field"].startswith(field), body
    assert_nothing_happened(module_settings)
