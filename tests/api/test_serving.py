"""The serving endpoints over Flask's test client: real MLflow registry (SQLite), real XGBoost."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from _pg import sql_backend  # noqa: F401  (fixture: these tests on SQLite and PostgreSQL)
from _serving import GUIDE_ROW, add_version, holdout_rows, serve_app, stop_app, wait_for
from seedcore import names
from seedcore.config import Settings
from seedcore.datasets import BUILTIN_FEATURES
from seedcore.db.database import Database
from seedcore.memory import MODEL_REFRESHED, IncidentStore, salience
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.integration

FEATURES = BUILTIN_FEATURES


@pytest.fixture(scope="module")
def served(tmp_path_factory, mlflow_template):
    """One serve-role app over a registry with versions 1 and 2 (2 in production), shared by read-only tests."""
    root = tmp_path_factory.mktemp("served")
    (root / "mlruns").mkdir()
    shutil.copy(mlflow_template, root / "mlruns" / "mlflow.db")
    settings = Settings(data_dir=root / "data", mlruns_dir=root / "mlruns", poll_interval_s=0.2, batch_chunk_rows=7)
    settings.ensure_dirs()
    registry = Registry(settings)
    v1, b1 = add_version(settings, registry, seed=1)
    v2, b2 = add_version(settings, registry, seed=2, depth=3)
    app = serve_app(settings)
    yield SimpleNamespace(settings=settings, app=app, client=app.test_client(), version=v2, booster=b2,
                          boosters={v1: b1, v2: b2})
    stop_app(app)


@pytest.fixture
def apps():
    made = []
    yield made
    for app in made:
        stop_app(app)


def make_client(settings, apps):
    app = serve_app(settings)
    apps.append(app)
    return app.test_client()


def expected(booster, rows) -> np.ndarray:
    return booster.inplace_predict(np.asarray(rows, dtype=np.float32))


# -- predict ---------------------------------------------------------------------------------------
def test_the_guides_predict_request(served):
    response = served.client.post("/xgboost/predict", json={"features": GUIDE_ROW})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "success"
    assert body["model_version"] == served.version and body["model_name"] == "utility_risk_model"
    assert body["prediction"] == pytest.approx(float(expected(served.booster, [GUIDE_ROW])[0]), abs=1e-6)
    assert body["probability"] == body["prediction"] and body["rows"] == 1


def test_instances_as_lists_and_as_objects_equal_inplace_predict(served):
    rows = holdout_rows(served.settings, 25).astype(float)
    rows[2, 5] = np.nan
    lists = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
    objects = [dict(zip(reversed(FEATURES), reversed(row))) for row in lists]  # key order does not matter
    want = expected(served.booster, rows)
    for instances in (lists, objects, lists[:1]):
        body = served.client.post("/xgboost/predict", json={"instances": instances}).get_json()
        assert body["model_version"] == served.version and body["rows"] == len(instances)
        np.testing.assert_allclose(body["predictions"], want[: len(instances)], rtol=0, atol=1e-6)
        assert "prediction" not in body


def test_features_as_an_object_and_null_as_missing(served):
    row = dict(zip(FEATURES, GUIDE_ROW), f0=None)  # f0 drives the label: missing changes the answer
    body = served.client.post("/xgboost/predict", json={"features": row}).get_json()
    want = expected(served.booster, [[np.nan if v is None else v for v in row.values()]])[0]
    assert body["prediction"] == pytest.approx(float(want), abs=1e-6)
    assert body["prediction"] != pytest.approx(float(expected(served.booster, [GUIDE_ROW])[0]), abs=1e-9)


ROW = GUIDE_ROW
NAMED = dict(zip(FEATURES, GUIDE_ROW))


def _with(i, value):
    row = list(ROW)
    row[i] = value
    return row


BAD_PREDICT = [
    ({"features": ROW[:9]}, "features"),
    ({"features": ROW + [1.1]}, "features"),
    ({"features": []}, "features"),
    ({"features": _with(4, "0.5")}, "features.4"),
    ({"features": _with(2, True)}, "features.2"),
    ({"features": _with(9, [1.0])}, "features.9"),
    ({"features": _with(0, {"v": 1})}, "features.0"),
    ({"features": _with(0, 1e39)}, "features.0"),
    ({"features": "0.1,0.2"}, "features"),
    ({"features": 3.5}, "features"),
    ({"features": {**NAMED, "age": 3}}, "features.age"),
    ({"features": {k: v for k, v in NAMED.items() if k != "f3"}}, "features.f3"),
    ({"features": {**NAMED, "f2": "high"}}, "features.f2"),
    ({"instances": []}, "instances"),
    ({"instances": {"f0": 1}}, "instances"),
    ({"instances": [ROW, ROW[:3]]}, "instances.1"),
    ({"instances": [ROW, 5]}, "instances.1"),
    ({"instances": [ROW, ROW, _with(7, None), _with(6, "x")]}, "instances.3.6"),
    ({"instances": [NAMED, {**NAMED, "f2": False}]}, "instances.1.f2"),
    ({"instances": [{**NAMED, "F0": 1.0}]}, "instances.0.F0"),
    ({"features": ROW, "instances": [ROW]}, "body"),
    ({}, "body"),
    ({"feature": ROW}, "feature"),
]


@pytest.mark.parametrize("payload,field", BAD_PREDICT)
def test_bad_predict_inputs(served, payload, field):
    response = served.client.post("/xgboost/predict", json=payload)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["status"] == "error" and body["field"] == field and body["error"]


@pytest.mark.parametrize("raw,field", [
    (b"features=1", "body"),
    (b"[0.1, 0.2]", "body"),
    (b'{"features": [Infinity, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}', "features.0"),
    (b'{"features": [1' + b"0" * 400 + b', 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}', "features.0"),
])
def test_bad_predict_bodies(served, raw, field):
    response = served.client.post("/xgboost/predict", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["field"] == field


def test_errors_say_what_was_expected(served):
    short = served.client.post("/xgboost/predict", json={"features": ROW[:9]}).get_json()["error"]
    assert "expected 10" in short and "got 9" in short and "'f9'" in short
    unknown = served.client.post("/xgboost/predict", json={"features": {**NAMED, "age": 3}}).get_json()["error"]
    assert "'age'" in unknown and "'f0'" in unknown
    typed = served.client.post("/xgboost/predict", json={"features": _with(4, "0.5")}).get_json()["error"]
    assert "number or null" in typed and "string" in typed


def test_nan_literal_counts_as_missing(served):
    response = served.client.post("/xgboost/predict", content_type="application/json",
                                  data=b'{"features": [NaN, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]}')
    assert response.status_code == 200
    want = expected(served.booster, [[np.nan] + ROW[1:]])[0]
    assert response.get_json()["prediction"] == pytest.approx(float(want), abs=1e-6)


# -- model_info, list_models, health -----------------------------------------------------------------
def test_model_info_describes_the_served_version(served):
    response = served.client.get("/xgboost/model_info")
    assert response.status_code == 200
    info = response.get_json()
    assert info["status"] == "success" and info["name"] == "utility_risk_model"
    assert info["version"] == served.version and info["alias"] == names.PRODUCTION_ALIAS
    assert info["stage"] == names.PRODUCTION_STAGE and info["source"] == "registry"
    assert info["source_run_id"] and info["experiment_name"] == "serving-tests"
    # no labelled outcomes yet: the metrics are the holdout figures, and say so
    assert info["metrics"]["source"] == "holdout" and info["metrics"]["auc"] == info["holdout"]["auc"]
    assert info["metrics"]["logloss"] == info["holdout"]["logloss"]
    assert 0.5 < info["validation"]["auc"] <= 1.0
    assert info["hyperparameters"]["max_depth"] == 3
    assert info["feature_names"] == FEATURES
    assert info["trained_at"] and info["promoted_at"] and info["loaded_at"]
    assert info["blessed_path"] == str(served.settings.blessed_dir / names.BLESSED_MODEL_FILE)
    assert info["model_uri"] == f"models:/utility_risk_model/{served.version}"
    assert info["serving"]["state"] == "ready" and info["serving"]["version"] == served.version


def test_list_models_newest_first_and_paginated(served):
    first = served.client.get("/xgboost/list_models?limit=1").get_json()
    assert first["total"] == 2 and first["next_offset"] == 1 and first["served_version"] == served.version
    (newest,) = first["models"]
    assert newest["version"] == served.version and newest["aliases"] == ["production"]
    assert newest["stage"] == "Production" and newest["served"] is True
    assert newest["source_run_id"] and newest["created_at"] and set(newest["metrics"]) == {"auc", "logloss"}
    second = served.client.get("/xgboost/list_models?limit=1&offset=1").get_json()
    (older,) = second["models"]
    assert older["version"] == served.version - 1 and older["stage"] == "Archived" and older["served"] is False
    assert older["aliases"] == [] and second["next_offset"] is None
    everything = served.client.get("/xgboost/list_models").get_json()
    assert [m["version"] for m in everything["models"]] == [served.version, served.version - 1]


@pytest.mark.parametrize("query,field", [
    ("limit=0", "limit"), ("limit=101", "limit"), ("limit=ten", "limit"), ("offset=-1", "offset"),
    ("offset=1.5", "offset"), ("page=2", "page"),
])
def test_bad_list_models_queries(served, query, field):
    response = served.client.get(f"/xgboost/list_models?{query}")
    assert response.status_code == 400
    assert response.get_json()["field"] == field


def test_health_reports_the_served_model(served):
    model = served.client.get("/health").get_json()["model"]
    assert model["state"] == "ready" and model["version"] == served.version and model["source"] == "registry"


def test_the_openapi_document_lists_the_serving_endpoints(served):
    paths = served.client.get("/openapi.json").get_json()["paths"]
    for path, method in (("predict", "post"), ("batch_predict", "post"), ("refresh_model", "post"),
                         ("model_info", "get"), ("list_models", "get")):
        assert method in paths[f"/xgboost/{path}"], path


# -- lifecycle: no model yet, refresh ----------------------------------------------------------------
def test_started_before_any_promotion_then_serves_after_one(settings, apps):
    client = make_client(settings, apps)
    info = client.get("/xgboost/model_info")
    assert info.status_code == 200
    body = info.get_json()
    assert body["status"] == "no_model_loaded" and body["version"] is None and body["metrics"] == {}
    assert body["serving"]["state"] == "no_model_loaded"
    assert client.get("/health").get_json()["model"]["state"] == "no_model_loaded"
    refused = client.post("/xgboost/predict", json={"features": GUIDE_ROW})
    assert refused.status_code == 503
    assert refused.get_json()["field"] is None and "no_model_loaded" in refused.get_json()["error"]

    version, booster = add_version(settings, Registry(settings))
    wait_for(lambda: client.post("/xgboost/predict", json={"features": GUIDE_ROW}).status_code == 200)
    body = client.post("/xgboost/predict", json={"features": GUIDE_ROW}).get_json()
    assert body["model_version"] == version
    assert body["prediction"] == pytest.approx(float(expected(booster, [GUIDE_ROW])[0]), abs=1e-6)
    assert client.get("/xgboost/model_info").get_json()["status"] == "success"


def refreshes(settings) -> list[dict]:
    """The model_refreshed incidents in flashbulb memory, oldest first."""
    db = Database(settings.database_url)
    try:
        return IncidentStore(db).query(event_type=MODEL_REFRESHED)["items"][::-1]
    finally:
        db.dispose()


def test_refresh_model(migrated_settings, apps):
    settings = migrated_settings
    client = make_client(settings.replace(poll_interval_s=600), apps)  # only refresh_model moves it here
    missing = client.post("/xgboost/refresh_model")
    assert missing.status_code == 404 and missing.get_json()["status"] == "error"
    registry = Registry(settings)
    v1, _ = add_version(settings, registry, seed=1)
    first = client.post("/xgboost/refresh_model").get_json()
    assert first["status"] == "success" and first["message"] == "Model refreshed successfully"
    assert first["changed"] is True and first["model_version"] == v1 and first["previous_version"] is None
    assert first["current_model_path"] == str(settings.blessed_dir / names.BLESSED_MODEL_FILE)
    (swap,) = refreshes(settings)  # the swap is remembered, by this serve-role process
    assert (swap["event_type"], swap["outcome"], swap["model_version"]) == (MODEL_REFRESHED, "success", str(v1))
    assert swap["salience"] == salience.model_refreshed()
    pid = client.get("/xgboost/model_info").get_json()["serving"]["pid"]
    assert swap["payload"] == {"event_type": MODEL_REFRESHED, "timestamp": swap["payload"]["timestamp"],
                               "outcome": "success", "model_name": settings.model_name, "model_version": v1,
                               "previous_version": None, "pid": pid, "salience": swap["salience"]}
    again = client.post("/xgboost/refresh_model").get_json()
    assert again["changed"] is False and again["model_version"] == v1
    assert len(refreshes(settings)) == 1  # nothing changed, nothing remembered
    v2, _ = add_version(settings, registry, seed=2, depth=3)
    assert client.post("/xgboost/predict", json={"features": ROW}).get_json()["model_version"] == v1
    moved = client.post("/xgboost/refresh_model").get_json()
    assert moved["changed"] is True and moved["previous_version"] == v1 and moved["model_version"] == v2
    assert client.post("/xgboost/predict", json={"features": ROW}).get_json()["model_version"] == v2
    assert [(r["model_version"], r["payload"]["previous_version"]) for r in refreshes(settings)] == [
        (str(v1), None), (str(v2), v1)]


def test_a_refresh_is_served_even_when_memory_cannot_record_it(settings, apps, caplog):
    """An unmigrated database: the swap happens and is answered; the incident is lost, and the log says so."""
    client = make_client(settings.replace(poll_interval_s=600), apps)
    v1, _ = add_version(settings, Registry(settings), seed=1)
    answer = client.post("/xgboost/refresh_model")
    assert answer.status_code == 200 and answer.get_json()["changed"] is True
    assert client.post("/xgboost/predict", json={"features": ROW}).get_json()["model_version"] == v1
    (lost,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" and "flashbulb" in r.getMessage()]
    assert f"version {v1} not recorded in flashbulb memory" in lost and "seedcore db upgrade" in lost


@pytest.mark.parametrize("path,payload", [("/xgboost/refresh_model", None),
                                          ("/xgboost/batch_predict", {"data_source": "rows.csv"})])
@pytest.mark.parametrize("header,status", [(None, 401), ("Bearer wrong", 403), ("Basic s3cret", 401)])
def test_state_changing_endpoints_need_the_token(settings, apps, path, payload, header, status):
    client = make_client(settings.replace(api_token="s3cret"), apps)
    headers = {"Authorization": header} if header else {}
    response = client.post(path, json=payload, headers=headers)
    assert response.status_code == status and response.get_json()["field"] == "Authorization"
    allowed = client.post(path, json=payload, headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code not in (401, 403)
