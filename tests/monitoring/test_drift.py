"""Drift: PSI near zero for the training distribution, large for a shifted feature; references stored after
registration (a training's follow-up) and computed once for versions registered without one."""

from __future__ import annotations

import pytest
import numpy as np

from _serving import add_version
from seedcore.datasets import load_dataset
from seedcore.db.database import Database
from seedcore.monitoring.drift import drift_report
from seedcore.promotion.drift_reference import load_reference, reference_bins
from seedcore.monitoring.live import version_reference
from seedcore.promotion.registry import Registry
from seedcore.promotion import followups

pytestmark = pytest.mark.unit


def test_psi_is_small_on_the_same_distribution_and_large_on_a_shift(settings):
    data = load_dataset(settings.data_dir)
    bins = reference_bins(data.x_train, data.feature_names)
    same = drift_report(bins, data.feature_names, data.x_holdout.astype(np.float64))
    assert same["psi_max"] < 0.1 and same["n"] == len(data.x_holdout)
    shifted = data.x_holdout.astype(np.float64).copy()
    shifted[:, 3] += 1.0
    report = drift_report(bins, data.feature_names, shifted)
    assert report["features"][0]["feature"] == "f3" and report["psi_max"] > 0.25
    assert report["features"][1]["psi"] < 0.1


def test_references_are_stored_at_training_and_computed_once_otherwise(migrated_settings):
    from seedcore.tuning.single import train_model

    settings = migrated_settings
    db = Database(settings.database_url)
    try:
        trained = train_model(settings, {"eta": 0.3, "max_depth": 2, "num_boost_round": 5})
        assert followups.wait(trained["mlflow"]["run_id"], 120)["drift_reference"] == "done"  # after the answer
        assert load_reference(db, settings.model_name, trained["model_version"]) is not None
        version, _ = add_version(settings, Registry(settings))  # registered without the hook
        assert load_reference(db, settings.model_name, version) is None
        computed = version_reference(db, settings, version)
        assert computed["features"]["f0"]["edges"] and load_reference(db, settings.model_name, version) == computed
    finally:
        db.dispose()
