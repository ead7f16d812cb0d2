"""Drift: PSI near zero for the training distribution, large for a shifted feature; references stored after
registration (a training's follow-up) and computed once for versions registered without one."""

from __future__ import annotations

import pytest
import numpy as np

from _serving import add_version
from seedcore.datasets import load_dataset
from seedcore.db.database import Database
from seedcore.monitoring.drift import MIN_ROWS, drift_report, psi_by_feature
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


def test_too_few_rows_give_no_psi_but_how_many_there_are(settings):
    data = load_dataset(settings.data_dir)
    bins = reference_bins(data.x_train, data.feature_names)
    x = data.x_holdout.astype(np.float64)
    assert max(psi_by_feature(bins, data.feature_names, x[:1]).values()) > 5  # one row: noise in the thousands
    thin = drift_report(bins, data.feature_names, x[:MIN_ROWS - 1])
    assert thin["psi_max"] is None and thin["features"] == [] and thin["n"] == MIN_ROWS - 1
    assert thin["status"] == f"not enough rows ({MIN_ROWS - 1} of {MIN_ROWS})"
    enough = drift_report(bins, data.feature_names, x[:MIN_ROWS])
    assert enough["psi_max"] is not None and enough["status"] == "measured"
    # why MIN_ROWS: at that many rows of an unchanged population, a feature's PSI averages below 0.1 (stable)
    # and psi_max below 0.25 (a significant shift); at a quarter as many, psi_max averages above it
    rng = np.random.default_rng(0)

    def draws(n):
        return [list(psi_by_feature(bins, data.feature_names, x[rng.choice(len(x), n)]).values()) for _ in range(30)]
    at_min = draws(MIN_ROWS)
    assert np.mean(at_min) < 0.1 and np.mean([max(d) for d in at_min]) < 0.25
    assert np.mean([max(d) for d in draws(MIN_ROWS // 4)]) > 0.25


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
