"""`GET /health`: 200 whenever the process can answer; reports model, database, MLflow and version."""

from __future__ import annotations

from importlib import metadata

import pytest
from seedcore.api import create_app
from seedcore.api.health import _model_failing, mask_password
from seedcore.db.database import Database
from seedcore.serving.model import NO_MODEL, UNAVAILABLE
from seedcore.services import services_of

pytestmark = pytest.mark.unit


def test_health_ok(app, client, migrated_settings):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["database"] == {"status": "ok", "dialect": "sqlite", "error": None}
    assert body["mlflow"] == {"tracking_uri": migrated_settings.tracking_uri,
                              "registry_uri": migrated_settings.registry_uri, "status": "ok", "error": None}
    assert body["version"] == metadata.version("seedcore-flywheel")


def test_health_reports_no_model_as_a_state_not_an_error(app, client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["model"]["state"] == NO_MODEL  # nothing promoted in a fresh registry
    assert body["model"]["serving"] is False
    assert body["model"]["model_name"] == services_of(app).settings.model_name


def test_unreachable_registry_degrades_but_missing_model_does_not():
    assert _model_failing({"state": UNAVAILABLE, "serving": True})
    assert _model_failing({"status": "error", "error": "boom"})
    assert not _model_failing({"state": NO_MODEL, "serving": False})
    assert not _model_failing(None)


def test_health_degraded_when_the_database_is_unreachable(app, client):
    # a real database that refuses connections: nothing listens on port 1
    unreachable = Database("postgresql://seedcore:pw@127.0.0.1:1/seedcore?connect_timeout=2")
    services_of(app).database = unreachable
    try:
        response = client.get("/health")
    finally:
        unreachable.dispose()
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["database"]["status"] == "error"
    assert body["database"]["dialect"] == "postgresql"
    assert "database unavailable" in body["database"]["error"]
    assert "pw" not in response.get_data(as_text=True)


def test_health_without_a_database_in_a_serve_only_process(migrated_settings):
    serve_app = create_app(migrated_settings, role="serve")
    try:
        body = serve_app.test_client().get("/health").get_json()
    finally:
        services_of(serve_app).stop()
    assert body["database"]["status"] == "not_configured"
    assert body["status"] == "ok"


def test_mask_password():
    assert mask_password("postgresql://mlflow:hunter2@db:5432/mlflow") == "postgresql://mlflow:***@db:5432/mlflow"
    assert mask_password("http://user:p%40ss@mlflow:5000") == "http://user:***@mlflow:5000"
    assert mask_password("sqlite:////tmp/mlruns/mlflow.db") == "sqlite:////tmp/mlruns/mlflow.db"
    assert mask_password("http://mlflow:5000") == "http://mlflow:5000"
