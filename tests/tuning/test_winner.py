"""seedcore.tuning.winner: the refit's threads. Every CPU the trials had from REFIT_ALL_CPUS_ROWS rows (training +
validation), a trial's below; either thread count trains the same model."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

from seedcore._xgboost import xgb
from seedcore.config import REFIT_ALL_CPUS_ROWS, Settings
from seedcore.datasets import load_dataset
from seedcore.tuning.trainable import refit_booster
from seedcore.tuning.winner import refit_threads

pytestmark = pytest.mark.unit


def rows(train: int, valid: int) -> SimpleNamespace:
    """What refit_threads reads of a Dataset: its training and validation labels."""
    return SimpleNamespace(y_train=np.zeros(train), y_valid=np.zeros(valid))


def test_large_data_refits_on_every_cpu_small_data_on_a_trials_threads(tmp_path):
    settings = Settings(data_dir=tmp_path, ray_num_cpus=3, cpus_per_trial=1)
    assert settings.local_cpus == 3
    assert refit_threads(settings, rows(REFIT_ALL_CPUS_ROWS - 100, 99)) == 1
    assert refit_threads(settings, rows(REFIT_ALL_CPUS_ROWS - 100, 100)) == 3  # training + validation rows count
    assert refit_threads(settings.replace(cpus_per_trial=2), rows(1000, 300)) == 2
    assert Settings(data_dir=tmp_path).local_cpus == (os.cpu_count() or 1)  # unset: the machine's


def test_one_thread_and_several_refit_the_same_model(tmp_path):
    dataset = load_dataset(tmp_path)  # the built-in data
    config = {"objective": "binary:logistic", "tree_method": "hist", "eta": 0.2, "max_depth": 6, "subsample": 0.7,
              "colsample_bytree": 0.6, "lambda": 1.5, "alpha": 0.5, "seed": 0}
    one, three = (refit_booster(config, dataset, 30, nthread=n) for n in (1, 3))
    matrix = xgb.DMatrix(dataset.x_holdout, feature_names=list(dataset.feature_names))
    assert np.array_equal(one.predict(matrix), three.predict(matrix))
