"""Promotion is all or nothing as every reader sees it: faults injected at the exact step that writes the
blessed metadata or switches the blessed link, a registry step failing after the switch, re-promoting the
production version, and the blessed files readers verify. Real MLflow (SQLite), real files, real requests."""

from __future__ import annotations

import os
import warnings

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from _flywheel import (add_version, blessed_as_read, failing_replace, holdout_rows, promotion_incidents,
                       published_dirs, same_predictions)
from _serving import serve_app, stop_app
from seedcore import names
from seedcore.promotion.registry import Registry
from seedcore.services import services_of

pytestmark = [pytest.mark.unit, pytest.mark.requests_only]  # the app runs no background thread


def promote(client, version: int, force: bool = True):
    return client.post("/xgboost/promote", json={"version": version, "force": force})


@pytest.fixture
def two_versions(app, client, migrated_settings):
    """Version 1 promoted (through the API), version 2 registered and waiting."""
    registry = Registry(migrated_settings)
    v1, booster1 = add_version(migrated_settings, registry, seed=1, depth=2, promote=False)
    v2, booster2 = add_version(migrated_settings, registry, seed=2, depth=4, promote=False)
    assert promote(client, v1).get_json()["status"] == "success"
    rows = holdout_rows(migrated_settings, 50)
    assert not same_predictions(booster1, booster2, rows)
    return registry, {v1: booster1, v2: booster2}, rows


def assert_readers_see_version_1(settings, registry, boosters, rows) -> None:
    metadata, served = blessed_as_read(settings)
    assert metadata["version"] == 1
    assert same_predictions(served, boosters[1], rows)  # the model under the path IS version 1
    assert int(registry.production_version().version) == 1


@pytest.mark.parametrize("step", [names.METADATA_FILE, names.BLESSED_DIRNAME],
                         ids=["metadata-rename", "link-switch"])
def test_a_failed_promotion_leaves_readers_on_the_old_consistent_pair(client, migrated_settings, two_versions,
                                                                     monkeypatch, step):
    registry, boosters, rows = two_versions
    with failing_replace(monkeypatch, step) as hits:
        response = promote(client, 2)
    assert hits, f"the promotion never reached the {step} step"
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error" and "No space left on device" in body["error"]
    assert_readers_see_version_1(migrated_settings, registry, boosters, rows)
    assert published_dirs(migrated_settings, 2) == []  # nothing half-written left behind
    assert [i["model_version"] for i in promotion_incidents(migrated_settings)] == ["1"]


def test_a_registry_step_failing_after_the_switch_switches_the_files_back(client, migrated_settings,
                                                                         two_versions, monkeypatch):
    registry, boosters, rows = two_versions
    link_before = os.path.realpath(migrated_settings.blessed_dir)

    def refuse(self, *args, **kwargs):
        raise MlflowException("registry write refused")

    monkeypatch.setattr(MlflowClient, "transition_model_version_stage", refuse)
    response = promote(client, 2)
    assert response.status_code == 503 and "registry write refused" in response.get_json()["error"]
    monkeypatch.undo()
    assert_readers_see_version_1(migrated_settings, registry, boosters, rows)  # alias put back too
    assert os.path.realpath(migrated_settings.blessed_dir) == link_before
    assert registry.get_version(1).current_stage == names.PRODUCTION_STAGE
    assert published_dirs(migrated_settings, 2) == []


def test_repromoting_the_production_version_is_unchanged(client, migrated_settings, two_versions):
    link_before = os.path.realpath(migrated_settings.blessed_dir)
    model_file = migrated_settings.blessed_dir / names.BLESSED_MODEL_FILE
    written_at = model_file.stat().st_mtime_ns
    response = promote(client, 1)
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "unchanged" and body["version"] == 1 and "already in production" in body["reason"]
    assert os.path.realpath(migrated_settings.blessed_dir) == link_before
    assert model_file.stat().st_mtime_ns == written_at
    assert [i["model_version"] for i in promotion_incidents(migrated_settings)] == ["1"]  # no new incident


def test_a_promotion_records_one_incident_and_swaps_the_served_model(app, client, migrated_settings, two_versions):
    registry, boosters, rows = two_versions
    body = promote(client, 2).get_json()
    assert body["status"] == "success" and body["previous_version"] == 1
    incidents = promotion_incidents(migrated_settings)
    assert [(i["event_type"], i["model_version"]) for i in incidents] == [("model_promoted", "1"),
                                                                          ("model_promoted", "2")]
    assert body["incident_id"] == incidents[-1]["id"] and incidents[-1]["payload"]["trigger"] == "api"
    # the flywheel told serving: this process serves version 2 at once, without waiting for a poll
    assert services_of(app).model.model.version == 2
    metadata, served = blessed_as_read(migrated_settings)
    assert metadata["version"] == 2 and same_predictions(served, boosters[2], rows)


def test_old_blessed_directories_are_bounded_and_model_ubj_loads_without_a_warning(client, migrated_settings):
    settings = migrated_settings
    registry = Registry(settings)
    for seed in range(1, 7):
        version, booster = add_version(settings, registry, seed=seed, promote=False)
        assert promote(client, version).get_json()["status"] == "success"
    assert len(published_dirs(settings)) == settings.blessed_history + 1
    assert published_dirs(settings, 6) and os.readlink(settings.blessed_dir) == published_dirs(settings, 6)[0].name

    ubj = settings.blessed_dir / "model.ubj"
    assert ubj.read_bytes() == (settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes()
    import xgboost as xgb

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xgb.Booster().load_model(str(ubj))
    assert not [w for w in caught if "Unknown file format" in str(w.message)]
    with warnings.catch_warnings(record=True) as caught:  # the reason model.ubj exists
        warnings.simplefilter("always")
        xgb.Booster().load_model(str(settings.blessed_dir / names.BLESSED_MODEL_FILE))
    assert [w for w in caught if "Unknown file format" in str(w.message)]


def test_serving_refuses_a_blessed_pair_that_does_not_match(client, migrated_settings, two_versions):
    """A model file that is not the one its metadata describes is never served, not even as a fallback."""
    settings = migrated_settings
    target = settings.blessed_dir / names.BLESSED_MODEL_FILE
    target.resolve().write_bytes(bytes(two_versions[1][2].save_raw("ubj")))  # v2's model under v1's metadata
    (settings.mlruns_dir / "mlflow.db").write_bytes(b"not a database" * 64)  # the registry cannot be read
    app = serve_app(settings)
    try:
        response = app.test_client().post("/xgboost/predict", json={"features": [0.1] * 10})
        assert response.status_code == 503 and response.get_json()["status"] == "error"
        health = app.test_client().get("/health").get_json()
        assert health["status"] == "degraded" and "sha256" in health["model"]["last_error"]
    finally:
        stop_app(app)
