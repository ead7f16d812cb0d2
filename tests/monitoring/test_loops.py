"""The flywheel end to end on real Ray, MLflow and SQL: a promoted model meets concept drift through
predictions and feedback; its monitor fires once; the triggered sweep trains on data that includes the
feedback; a better version is promoted and served; live AUC recovers; the incidents tell the chain."""

from __future__ import annotations

import pandas as pd
import pytest

from _serving import add_version
from _tuning import job_status, mlflow_client, wait_followups, wait_job
from seedcore.api import create_app
from seedcore.db.database import Database
from seedcore.promotion.drift_reference import load_reference
from seedcore.monitoring.scenario import drifted_rows
from seedcore.promotion.registry import Registry
from seedcore.services import services_of

pytestmark = pytest.mark.integration

RETUNE = {"space_type": "conservative", "config_type": "conservative", "custom_tune_config": {"num_samples": 2},
          "data_source": "feedback", "experiment_name": "flywheel_retune"}


def _serve_and_label(client, rows, labels) -> dict:
    ids = client.post("/xgboost/predict", json={"instances": rows}).get_json()["prediction_ids"]
    answer = client.post("/xgboost/feedback", json={"prediction_ids": ids, "labels": labels})
    assert answer.status_code == 200 and answer.get_json()["accepted"] == len(rows), answer.get_json()
    return client.get("/xgboost/model_info").get_json()


@pytest.fixture
def flywheel_app(migrated_settings, ray_session):
    settings = migrated_settings.replace(live_min_rows=100, live_window_rows=300, monitor_interval_s=3600)
    first, _ = add_version(settings, Registry(settings), rounds=20, depth=3)
    app = create_app(settings)
    app.config["TESTING"] = True
    client = app.test_client()
    assert client.post("/xgboost/refresh_model").get_json()["model_version"] == first
    yield settings, client, first
    services_of(app).stop()


def test_drift_fires_a_monitor_once_and_the_retuned_model_recovers(flywheel_app):
    settings, client, first = flywheel_app
    rows, labels = drifted_rows(300)
    degraded = _serve_and_label(client, rows, labels)
    assert degraded["metrics"]["source"] == "live" and degraded["metrics"]["auc"] < 0.5

    monitor = client.post("/xgboost/monitors", json={"name": "live-auc", "metric": "live_auc", "threshold": 0.7,
                                                     "min_samples": 100, "cooldown_s": 0, "tune": RETUNE})
    assert monitor.status_code == 201, monitor.get_json()
    monitor_id = monitor.get_json()["id"]
    fired = client.post(f"/xgboost/monitors/{monitor_id}/check").get_json()
    again = client.post(f"/xgboost/monitors/{monitor_id}/check").get_json()
    assert fired["fired"] and not again["fired"], (fired, again)  # its job is queued or running: once
    job = wait_job(client, fired["job_id"], timeout=600)
    assert job["state"] == "succeeded", job["error"]
    assert job["trigger"] == f"monitor:{monitor_id}"
    assert len(client.get("/xgboost/tune/jobs").get_json()["items"]) == 1

    result = job["result"]
    trained_on = settings.data_dir / result["dataset"]["source"]
    frame = pd.read_parquet(trained_on)
    assert len(frame) == 2000 + 300 and (frame["f6"] > 2.5).sum() >= 280  # the feedback rows are in
    assert result["promotion"]["status"] == "success", result["promotion"]
    second = result["model_version"]
    assert second > first
    parent = mlflow_client(settings).get_run(result["mlflow"]["parent_run_id"])
    assert parent.data.tags["seedcore.trigger"] == f"monitor:{monitor_id}"
    followups = wait_followups(lambda: job_status(client, job["job_id"]))["result"]["followups"]
    assert followups["drift_reference"] == "done", followups
    db = Database(settings.database_url)
    assert load_reference(db, settings.model_name, second) is not None  # drift baseline stored after the answer
    db.dispose()

    recovered = _serve_and_label(client, *drifted_rows(300, seed=123))
    assert recovered["version"] == second
    assert recovered["metrics"]["source"] == "live" and recovered["metrics"]["auc"] > 0.7, recovered["metrics"]

    chain = client.get("/mfb/incidents", query_string={"limit": 50}).get_json()["items"]
    by_type = {i["event_type"]: i for i in chain if i["payload"].get("job_id") == job["job_id"]}
    assert {"model_degradation_detected", "model_tuning_completed", "model_promoted"} <= set(by_type), by_type.keys()
    assert by_type["model_degradation_detected"]["payload"]["trigger"] == f"monitor:{monitor_id}"
    assert by_type["model_degradation_detected"]["salience"] >= 0.7
