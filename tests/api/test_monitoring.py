"""The flywheel over REST: predict ids, feedback, live model_info, evaluate, monitors and schedules CRUD,
and bad input refused with a 400 naming the field and nothing stored."""

from __future__ import annotations

import pytest

from _pg import sql_backend  # noqa: F401  (fixture: these tests on SQLite and PostgreSQL)
from _monitoring import TINY_TUNE
from _serving import GUIDE_ROW, add_version
from _tuning import mlflow_client
from seedcore.api import create_app
from seedcore.datasets import load_dataset
from seedcore.db.database import Database
from seedcore.monitoring.drift import MIN_ROWS
from seedcore.monitoring.evaluate import EVALUATION_EXPERIMENT, latest_evaluation
from seedcore.promotion.registry import Registry
from seedcore.services import services_of

pytestmark = pytest.mark.integration


@pytest.fixture
def flywheel(migrated_settings):
    """An app (role all) serving a promoted version; model_info goes live after 20 labels."""
    settings = migrated_settings.replace(live_min_rows=20)
    version, _ = add_version(settings, Registry(settings), rounds=10)
    app = create_app(settings)
    app.config["TESTING"] = True
    client = app.test_client()
    assert client.post("/xgboost/refresh_model").status_code == 200
    yield settings, client, version
    services_of(app).stop()


def _labelled(settings, n=60):
    data = load_dataset(settings.data_dir)
    return data.x_holdout[:n].tolist(), data.y_holdout[:n].astype(int).tolist()


def test_predict_ids_feedback_and_live_model_info(flywheel):
    settings, client, version = flywheel
    one = client.post("/xgboost/predict", json={"features": GUIDE_ROW}).get_json()
    assert len(one["prediction_id"]) == 32
    rows, labels = _labelled(settings)
    many = client.post("/xgboost/predict", json={"instances": rows}).get_json()
    ids = many["prediction_ids"]
    assert len(set(ids)) == len(rows)
    before = client.get("/xgboost/model_info").get_json()
    assert before["metrics"]["source"] == "holdout" and before["metrics"]["auc"] == before["holdout"]["auc"]

    answer = client.post("/xgboost/feedback", json={"prediction_ids": ids + ["f" * 32], "labels": labels + [1]})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["accepted"] == len(rows) and body["results"][-1] == {"prediction_id": "f" * 32, "status": "unknown"}
    info = client.get("/xgboost/model_info").get_json()
    assert info["metrics"]["source"] == "live" and info["metrics"]["n"] == len(rows)
    assert info["metrics"]["auc"] != info["holdout"]["auc"] and 0.5 < info["metrics"]["auc"] <= 1.0
    thin = len(rows) + 1  # fewer logged rows than the PSI needs: no number, and model_info says why
    assert thin < MIN_ROWS and info["drift"]["psi_max"] is None and info["drift"]["features"] == []
    assert info["drift"]["status"] == f"not enough rows ({thin} of {MIN_ROWS})"
    page = client.get("/ui").get_data(as_text=True)  # the page says so too, with no PSI bar in red
    assert f"not enough rows ({thin} of {MIN_ROWS})" in page and "class='warn'" not in page
    scraped = client.get("/metrics")  # no PSI gauge over too few rows
    assert scraped.status_code == 200 and "seedcore_drift_psi_max" not in scraped.get_data(as_text=True)
    assert client.get("/health").get_json()["prediction_log"]["status"] == "ok"

    scored = client.post("/xgboost/feedback", json={"instances": rows[:5], "labels": labels[:5]}).get_json()
    assert scored["accepted"] == 5 and scored["model_version"] == version


@pytest.mark.parametrize("body, field", [
    ({"prediction_ids": ["a", "b"], "labels": [1]}, "labels"),
    ({"prediction_ids": ["a"], "labels": [2]}, "labels.0"),
    ({"prediction_ids": ["a"], "labels": ["yes"]}, "labels.0"),
    ({"instances": [[0.0] * 10, [1.0] * 10], "labels": [1]}, "labels"),
    ({"instances": [[0.0] * 9], "labels": [1]}, "instances.0"),
    ({"labels": [1]}, "prediction_ids"),
    ({"prediction_ids": ["a"], "instances": [[0.0] * 10], "labels": [1]}, "prediction_ids"),
])
def test_bad_feedback_is_a_400_naming_the_field(flywheel, body, field):
    settings, client, version = flywheel
    answer = client.post("/xgboost/feedback", json=body)
    assert answer.status_code == 400 and answer.get_json()["field"] == field, answer.get_json()
    db = Database(settings.database_url)
    from seedcore.monitoring.feedback import live_metrics

    assert live_metrics(db, settings.model_name, version)["n"] == 0
    db.dispose()


def test_evaluate_stores_and_logs_a_run_linked_to_the_version(flywheel):
    settings, client, version = flywheel
    answer = client.post("/xgboost/evaluate", json={})
    assert answer.status_code == 200, answer.get_json()
    result = answer.get_json()
    assert result["model_version"] == version and result["metrics"]["rows"] == 2000
    assert 0.5 < result["metrics"]["auc"] <= 1 and 0 <= result["metrics"]["brier"] <= 1
    assert sum(b["rows"] for b in result["calibration"]) == 2000
    run = mlflow_client(settings).get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["seedcore.model_version"] == str(version)
    assert run.data.metrics["auc"] == pytest.approx(result["metrics"]["auc"])
    db = Database(settings.database_url)
    assert latest_evaluation(db, settings.model_name, version)["id"] == result["id"]
    db.dispose()
    missing = client.post("/xgboost/evaluate", json={"version": 99})
    assert missing.status_code == 404 and missing.get_json()["field"] == "version"
    bad = client.post("/xgboost/evaluate", json={"data_source": "../x.csv", "label_column": "y"})
    assert bad.status_code == 400 and bad.get_json()["field"] == "data_source"
    assert len(mlflow_client(settings).search_runs(
        [mlflow_client(settings).get_experiment_by_name(EVALUATION_EXPERIMENT).experiment_id])) == 1


def test_monitor_and_schedule_crud(flywheel):
    _, client, _ = flywheel
    monitor = {"name": "auc", "metric": "live_auc", "threshold": 0.9, "min_samples": 10, "tune": TINY_TUNE}
    created = client.post("/xgboost/monitors", json=monitor)
    assert created.status_code == 201, created.get_json()
    mid = created.get_json()["id"]
    assert client.post("/xgboost/monitors", json=monitor).status_code == 409  # same name
    patched = client.patch(f"/xgboost/monitors/{mid}", json={"enabled": False, "cooldown_s": 5})
    assert patched.get_json()["enabled"] is False and patched.get_json()["cooldown_s"] == 5
    assert client.patch(f"/xgboost/monitors/{mid}", json={"max_drop": 0.1}).get_json()["field"] == "threshold"
    assert [m["id"] for m in client.get("/xgboost/monitors").get_json()["items"]] == [mid]
    assert client.post(f"/xgboost/monitors/{mid}/check").get_json()["state"] == "insufficient_data"
    assert client.delete(f"/xgboost/monitors/{mid}").status_code == 200
    assert client.get(f"/xgboost/monitors/{mid}").status_code == 404

    schedule = {"name": "weekly", "cron": "0 2 * * 1", "timezone": "Europe/Paris", "tune": TINY_TUNE}
    made = client.post("/xgboost/schedules", json=schedule)
    assert made.status_code == 201 and made.get_json()["next_run_at"]
    sid = made.get_json()["id"]
    assert client.patch(f"/xgboost/schedules/{sid}", json={"enabled": False}).get_json()["enabled"] is False
    assert client.get("/xgboost/schedules").get_json()["total"] == 1
    assert client.delete(f"/xgboost/schedules/{sid}").status_code == 200


@pytest.mark.parametrize("url, body, field", [
    ("/xgboost/schedules", {"name": "s", "cron": "0 25 * * *", "tune": TINY_TUNE}, "cron"),
    ("/xgboost/schedules", {"name": "s", "cron": "0 2 * * *", "timezone": "Nowhere/City", "tune": TINY_TUNE},
     "timezone"),
    ("/xgboost/schedules", {"name": "s", "cron": "0 2 * * *", "tune": {"space_type": "x"}}, "tune.space_type"),
    ("/xgboost/schedules", {"name": "s", "cron": "0 2 * * *", "tune": TINY_TUNE, "catch_up": "all"}, "catch_up"),
    ("/xgboost/monitors", {"name": "m", "metric": "accuracy", "threshold": 0.9, "tune": TINY_TUNE}, "metric"),
    ("/xgboost/monitors", {"name": "m", "metric": "live_auc", "threshold": 0.9,
                           "tune": {"custom_tune_config": {"num_samples": 0}}}, "tune.custom_tune_config"),
    ("/xgboost/monitors", {"name": "m", "metric": "live_auc", "threshold": 0.9, "window": {"rows": 0},
                           "tune": TINY_TUNE}, "window.rows"),
])
def test_bad_monitors_and_schedules_are_400_and_nothing_is_stored(flywheel, url, body, field):
    _, client, _ = flywheel
    answer = client.post(url, json=body)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["field"].startswith(field), answer.get_json()
    assert client.get(url).get_json()["total"] == 0


def test_predict_answers_when_the_log_store_is_down_and_health_says_so(migrated_settings):
    settings = migrated_settings
    version, _ = add_version(settings, Registry(settings))
    down = settings.replace(database_url="postgresql+psycopg://nobody:x@127.0.0.1:1/none")
    app = create_app(down, role="serve")
    client = app.test_client()
    try:
        answer = client.post("/xgboost/predict", json={"features": GUIDE_ROW})
        assert answer.status_code == 200 and len(answer.get_json()["prediction_id"]) == 32
        assert services_of(app).prediction_log.flush(30)
        health = client.get("/health").get_json()
        assert health["status"] == "degraded" and health["prediction_log"]["status"] == "degraded"
        assert health["prediction_log"]["dropped"] == 1
        info = client.get("/xgboost/model_info").get_json()
        assert info["version"] == version and info["metrics"]["source"] == "holdout"
    finally:
        services_of(app).stop()
