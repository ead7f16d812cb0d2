"""estimated_auc: the AUC expected from calibrated probabilities, checked against labels under shifts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from seedcore.datasets import BUILTIN_FEATURES, BUILTIN_LABEL, builtin_frame, split_frame
from seedcore.monitoring.estimate import calibrate, estimate_from_scores, expected_auc, fit_calibration
from seedcore.scoring import roc_auc

pytestmark = pytest.mark.unit

STRENGTHS = (0.5, 1.0, 1.5)  # covariate shift: rows drawn with weight exp(k * z) of one standardised feature
PARAMS = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.1, "nthread": 1, "seed": 0}


def _model(frame: pd.DataFrame, label: str, features: list[str], rounds: int = 150):
    """A booster on the platform's fixed-seed split, and its calibration fitted on that split's holdout."""
    dataset = split_frame(frame, label, features, "test")
    booster = xgb.train(PARAMS, xgb.DMatrix(dataset.x_train, label=dataset.y_train), rounds)
    return booster, fit_calibration(booster.inplace_predict(dataset.x_holdout), dataset.y_holdout)


def _shifted(x: np.ndarray, y: np.ndarray, column: int, strength: float, rows: int, seed: int = 0):
    """Rows of (x, y) resampled so that feature `column` moves; P(y|x) is untouched (same rows, same labels)."""
    z = (x[:, column] - x[:, column].mean()) / x[:, column].std()
    weights = np.exp(strength * z)
    pick = np.random.default_rng(seed).choice(len(y), size=rows, replace=True, p=weights / weights.sum())
    return x[pick], y[pick]


def test_expected_auc_is_the_auc_of_labels_drawn_from_the_probabilities():
    rng = np.random.default_rng(3)
    p = rng.beta(0.6, 0.6, 50_000)
    y = rng.random(p.size) < p
    assert expected_auc(p, p) == pytest.approx(roc_auc(y, p), abs=0.005)
    assert expected_auc(p, np.full(p.size, 0.3)) == pytest.approx(0.5, abs=0.005)  # no signal in the probabilities
    assert expected_auc([0.2, 0.2], [0.0, 0.0]) is None  # no row can be a positive


def test_ties_count_half_and_a_row_is_never_its_own_pair():
    # two rows, same score: whichever is positive, the pair is a tie
    assert expected_auc([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.5)
    # a positive above a negative for sure
    assert expected_auc([0.9, 0.1], [1.0, 0.0]) == pytest.approx(1.0)


def test_calibration_turns_distorted_scores_back_into_probabilities():
    rng = np.random.default_rng(5)
    p = rng.random(40_000)
    y = (rng.random(p.size) < p).astype(int)
    scores = p ** 3  # same ranking, badly calibrated
    calibration = fit_calibration(scores[:20_000], y[:20_000])
    assert np.all(np.diff(calibration["y"]) >= 0) and len(calibration["x"]) <= 256
    assert np.abs(calibrate(calibration, scores[20_000:]) - p[20_000:]).mean() < 0.03
    raw = expected_auc(scores[20_000:], scores[20_000:])
    fixed = estimate_from_scores(calibration, scores[20_000:])
    truth = roc_auc(y[20_000:], scores[20_000:])
    assert abs(fixed - truth) < 0.01 < abs(raw - truth)


@pytest.mark.parametrize("column", [0, 4])
def test_within_003_under_covariate_shift_on_the_builtin_data(column):
    booster, calibration = _model(builtin_frame(10_000, seed=7), BUILTIN_LABEL, list(BUILTIN_FEATURES))
    pool = builtin_frame(60_000, seed=11)  # the same P(y|x), other rows
    x, y = pool[list(BUILTIN_FEATURES)].to_numpy(np.float32), pool[BUILTIN_LABEL].to_numpy()
    errors = []
    for strength in STRENGTHS:
        xs, ys = _shifted(x, y, column, strength, 10_000)
        scores = booster.inplace_predict(xs)
        errors.append(abs(estimate_from_scores(calibration, scores) - roc_auc(ys, scores)))
    assert max(errors) <= 0.03, errors


def test_within_003_under_covariate_shift_on_breast_cancer():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns={c: f"c{i}" for i, c in enumerate(data.feature_names)})
    features = [f"c{i}" for i in range(len(data.feature_names))]
    train = frame.sample(frac=0.6, random_state=0)
    rest = frame.drop(train.index)
    booster, calibration = _model(train, "target", features, rounds=60)
    x, y = rest[features].to_numpy(np.float32), rest["target"].to_numpy()
    for strength in STRENGTHS:
        xs, ys = _shifted(x, y, 0, strength, 5_000)
        scores = booster.inplace_predict(xs)
        assert abs(estimate_from_scores(calibration, scores) - roc_auc(ys, scores)) <= 0.03, strength


def test_a_concept_shift_is_invisible_to_the_estimate():
    booster, calibration = _model(builtin_frame(10_000, seed=7), BUILTIN_LABEL, list(BUILTIN_FEATURES))
    pool = builtin_frame(20_000, seed=11)
    x = pool[list(BUILTIN_FEATURES)].to_numpy(np.float32)
    scores = booster.inplace_predict(x)
    # P(y|x) changes: the label now follows another rule; the inputs, hence the scores, do not move
    y_new = (np.random.default_rng(1).random(len(x)) < 1 / (1 + np.exp(-(x[:, 6] - x[:, 0])))).astype(int)
    before, after = roc_auc(pool[BUILTIN_LABEL].to_numpy(), scores), roc_auc(y_new, scores)
    estimate = estimate_from_scores(calibration, scores)
    assert before - after > 0.2  # the model got much worse
    assert abs(estimate - before) < 0.03  # the estimate still says it is as good as before
