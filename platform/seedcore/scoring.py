"""Binary-classification metrics computed the same way for every model we compare."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seedcore.names import AUC, LOGLOSS

_EPS = 1e-15


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties get average ranks)."""
    y = np.asarray(y_true) > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(y_score, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    p = np.clip(np.asarray(y_prob, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(y_true, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def evaluate(booster, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """AUC and logloss of an XGBoost booster's probabilities on (x, y)."""
    prob = booster.inplace_predict(x)
    return {AUC: roc_auc(y, prob), LOGLOSS: log_loss(y, prob)}
