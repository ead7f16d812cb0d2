"""A promotion that fails inside a sweep never loses the sweep: the answer is the sweep's result with
`promotion.status: "error"` and the reason, and the registered version is kept and named."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from _flywheel import promotion_incidents
from _tuning import FAST, model_versions, production_version

pytestmark = pytest.mark.integration


def test_a_promotion_error_inside_a_sweep_returns_the_result(client, migrated_settings, ray_session, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise MlflowException("alias write refused by the registry")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", refuse)
    response = client.post("/xgboost/tune", json={**FAST, "experiment_name": "promotion_fails"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    promotion = body["promotion"]
    assert promotion["status"] == "error" and "alias write refused" in promotion["reason"]
    assert promotion["version"] == body["model_version"]
    assert [int(mv.version) for mv in model_versions(migrated_settings)] == [body["model_version"]]  # kept
    assert production_version(migrated_settings) is None
    blessed_link = migrated_settings.blessed_dir
    assert not (blessed_link.exists() or blessed_link.is_symlink())  # switched back: nothing was blessed

    job = client.get(f"/xgboost/tune/status/{body['job_id']}").get_json()
    assert job["state"] == "succeeded" and job["result"]["promotion"]["status"] == "error"
    assert promotion_incidents(migrated_settings) == []
    completed = client.get("/mfb/incidents", query_string={"event_type": "model_tuning_completed"}).get_json()
    assert [i["payload"]["promotion_status"] for i in completed["items"]] == ["error"]
