"""seedcore.tuning.trainable: a trial's per-round validation AUC (scored by seedcore.scoring, not XGBoost's own
"auc") is XGBoost's number, early stopping follows it, and the booster records the metrics the config asked for."""

from __future__ import annotations

import json

import pytest
import xgboost as xgb

from seedcore.datasets import load_dataset
from seedcore.tuning.checkpoints import VALIDATION
from seedcore.tuning.spaces import FIXED_PARAMS
from seedcore.tuning.trainable import (BEST_ITERATION, CONFIG_ATTR, CURVE, TrialData, make_dmatrices, split_config,
                                       train_booster)

pytestmark = pytest.mark.unit


def test_each_rounds_auc_and_the_early_stop_are_xgboosts_own():
    data = TrialData.of(load_dataset("builtin"))
    config = {**FIXED_PARAMS, "eta": 0.3, "max_depth": 4, "num_boost_round": 80, "early_stopping_rounds": 4}
    booster, final = train_booster(config, data, 1)

    dtrain, dvalid = make_dmatrices(data)
    params, rounds, early = split_config(config, 1)
    theirs: dict = {}  # XGBoost scoring its own "auc" (and logloss), stopping on the AUC as we ask it to
    reference = xgb.train(params, dtrain, rounds, evals=[(dvalid, VALIDATION)], evals_result=theirs,
                          verbose_eval=False, early_stopping_rounds=early)
    trained = len(theirs[VALIDATION]["auc"])
    assert trained < rounds  # it did stop early, so the stop is compared too
    assert [r[0] for r in final[CURVE]] == list(range(1, trained + 1))
    assert [r[1] for r in final[CURVE]] == pytest.approx(theirs[VALIDATION]["auc"], abs=1e-12)
    assert [r[2] for r in final[CURVE]] == theirs[VALIDATION]["logloss"]
    assert final[BEST_ITERATION] == reference.best_iteration and booster.num_boosted_rounds() == final[BEST_ITERATION] + 1

    metrics = [m["name"] for m in json.loads(booster.attr(CONFIG_ATTR))["learner"]["metrics"]]
    assert metrics == FIXED_PARAMS["eval_metric"]  # the config as asked for, though XGBoost did not score the AUC
