"""Binary-classification metrics computed the same way for every model we compare."""

from __future__ import annotations

import numpy as np

from seedcore.names import AUC, LOGLOSS

_EPS = 1e-15


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve: the Mann-Whitney U statistic, a tied positive and negative counting half.

    Exact, from the two classes' scores sorted and searched: fast enough to score every boosting round of a
    trial (seedcore.tuning.trainable), where XGBoost's own "auc" took a fifth of a round.
    """
    y = np.asarray(y_true) > 0.5
    score = np.asarray(y_score)
    negatives, positives = np.sort(score[~y]), np.sort(score[y])
    if not len(positives) or not len(negatives):
        return float("nan")
    below = np.searchsorted(negatives, positives, "left").sum()  # negatives scored lower than each positive
    not_above = np.searchsorted(negatives, positives, "right").sum()  # ... lower or tied
    return float((below + not_above) / 2 / (len(positives) * len(negatives)))


def log_loss(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    p = np.clip(np.asarray(y_prob, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(y_true, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def evaluate(booster, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """AUC and logloss of an XGBoost booster's probabilities on (x, y)."""
    prob = booster.inplace_predict(x)
    return {AUC: roc_auc(y, prob), LOGLOSS: log_loss(y, prob)}
