"""The model holder: loads the production version from a real MLflow registry, follows the alias,
falls back to the blessed file, reports its state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _serving import add_version, holdout_rows, wait_for
from seedcore import names
from seedcore.errors import NoModelLoadedError, NotFoundError, RegistryUnavailableError
from seedcore.promotion.production import Production
from seedcore.promotion.registry import Registry
from seedcore.serving.model import FROM_BLESSED_FILE, FROM_REGISTRY, ModelHolder

pytestmark = pytest.mark.unit


@pytest.fixture
def registry(settings):
    return Registry(settings)


@pytest.fixture
def holders():
    started = []
    yield started
    for holder in started:
        holder.stop()


def start_holder(settings, holders) -> ModelHolder:
    holder = ModelHolder(settings).start()
    holders.append(holder)
    return holder


def test_before_any_promotion_the_holder_reports_no_model_loaded(settings, holders):
    holder = start_holder(settings, holders)
    status = holder.status()
    assert status["state"] == "no_model_loaded"
    assert status["serving"] is False and status["version"] is None and status["last_error"] is None
    assert "promote" in status["detail"]
    with pytest.raises(NoModelLoadedError, match="no_model_loaded"):
        holder.require()
    with pytest.raises(NotFoundError):
        holder.refresh()


def test_loads_the_production_version_and_predicts_like_inplace_predict(settings, registry, holders):
    add_version(settings, registry, seed=1)
    version, booster = add_version(settings, registry, seed=2, depth=3)
    holder = start_holder(settings, holders)
    model = holder.require()
    assert (model.version, model.source, model.name) == (version, FROM_REGISTRY, settings.model_name)
    assert model.feature_names == tuple(f"f{i}" for i in range(10))
    assert holder.describe()["blessed_path"] == str(settings.blessed_dir / names.BLESSED_MODEL_FILE)
    x = holdout_rows(settings, 50)
    x[3, 4] = np.nan  # missing values go through as NaN
    np.testing.assert_allclose(model.predict(x), booster.inplace_predict(x), rtol=0, atol=1e-6)
    status = holder.status()
    assert status["state"] == "ready" and status["version"] == version and status["alias_version"] == version


def test_refresh_swaps_when_the_alias_moves_and_is_idle_otherwise(settings, registry, holders):
    v1, _ = add_version(settings, registry, seed=1)
    holder = start_holder(settings.replace(poll_interval_s=600), holders)  # no poll races the refresh
    same = holder.refresh()
    assert same.changed is False and same.model is holder.model and same.model.version == v1
    v2, booster2 = add_version(settings, registry, seed=2, depth=4)
    old = holder.model
    moved = holder.refresh()
    assert moved.changed is True and moved.previous_version == v1 and holder.model.version == v2
    x = holdout_rows(settings)
    np.testing.assert_allclose(holder.model.predict(x), booster2.inplace_predict(x), atol=1e-6)
    # the old model object is untouched: a request that grabbed it finishes on it
    assert old.version == v1 and old.predict(x).shape == (len(x),)


def test_the_poll_thread_follows_the_alias_without_refresh(settings, registry, holders):
    v1, _ = add_version(settings, registry, seed=1)
    holder = start_holder(settings, holders)  # polls every _stores.POLL_S
    v2, _ = add_version(settings, registry, seed=2, depth=4)
    wait_for(lambda: holder.model.version == v2, timeout=10)
    Production(registry).promote(v1, force=True)
    wait_for(lambda: holder.model.version == v1, timeout=10)
    assert holder.status()["state"] == "ready"


def test_poll_picks_up_the_first_promotion(settings, registry, holders):
    holder = start_holder(settings, holders)
    assert holder.model is None
    version, _ = add_version(settings, registry)
    wait_for(lambda: holder.model is not None, timeout=10)
    assert holder.model.version == version and holder.status()["state"] == "ready"


def test_registry_unreachable_at_start_serves_the_blessed_file(settings, registry, holders, monkeypatch):
    version, booster = add_version(settings, registry, seed=3)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = settings.replace(tracking_uri="http://127.0.0.1:1", registry_uri="http://127.0.0.1:1")
    holder = start_holder(dead, holders)
    model = holder.require()
    assert model.source == FROM_BLESSED_FILE and model.version == version
    x = holdout_rows(settings)
    np.testing.assert_allclose(model.predict(x), booster.inplace_predict(x), atol=1e-6)
    status = holder.status()
    assert status["state"] == "registry_unavailable" and status["serving"] is True
    assert "127.0.0.1:1" in status["last_error"]
    with pytest.raises(RegistryUnavailableError):
        holder.refresh()
    assert holder.model is model  # still serving what it has


def test_registry_unreachable_and_no_blessed_file(settings, holders, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = settings.replace(tracking_uri="http://127.0.0.1:1", registry_uri="http://127.0.0.1:1")
    holder = start_holder(dead, holders)
    assert holder.model is None
    assert holder.status()["state"] == "registry_unavailable" and holder.status()["serving"] is False
    with pytest.raises(NoModelLoadedError):
        holder.require()


def test_blessed_file_metadata_matches_what_model_info_needs(settings, registry, holders, monkeypatch):
    version, _ = add_version(settings, registry)
    metadata = json.loads((settings.blessed_dir / names.METADATA_FILE).read_text())
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = settings.replace(tracking_uri="http://127.0.0.1:1", registry_uri="http://127.0.0.1:1")
    described = start_holder(dead, holders).require().describe()
    assert described["version"] == version
    assert described["holdout"] == metadata["holdout"] and described["hyperparameters"] == metadata["hyperparameters"]
    assert described["promoted_at"] == metadata["promoted_at"] and described["source"] == FROM_BLESSED_FILE


def test_stop_ends_the_poll_thread(settings, holders):
    holder = start_holder(settings, holders)
    thread = holder._thread
    assert thread.is_alive()
    holder.stop()
    assert not thread.is_alive()
