"""Drift without labels: the population stability index (PSI) of recent logged inputs against each version's
training distribution (its quantile bins, seedcore.promotion.drift_reference), per feature.

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

Below 0.1 is usually read as stable, 0.1-0.25 as a moderate shift, above 0.25 as a significant one.
"""

from __future__ import annotations

import numpy as np

from seedcore.promotion.drift_reference import shares as _shares

_EPS = 1e-4  # a bin no row fell into still counts a little, so the logarithm stays finite
TOP_FEATURES = 5


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index of two bin-share vectors."""
    e, a = np.maximum(expected, _EPS), np.maximum(actual, _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_by_feature(bins: dict, feature_names, x: np.ndarray) -> dict[str, float]:
    """PSI of each feature of `x` (rows of logged inputs) against the reference `bins`."""
    scores = {}
    for j, name in enumerate(feature_names):
        ref = bins["features"].get(name)
        if ref is None or x.shape[1] <= j:
            continue
        column = x[:, j]
        column = column[~np.isnan(column)]
        if column.size:
            scores[name] = psi(np.array(ref["expected"]), _shares(column, np.array(ref["edges"])))
    return scores


def drift_report(bins: dict | None, feature_names, x: np.ndarray) -> dict | None:
    """`{"psi_max", "n", "features": [worst first]}` for logged inputs `x`; None without a reference or rows."""
    if bins is None or x.size == 0:
        return None
    scores = psi_by_feature(bins, feature_names, x)
    if not scores:
        return None
    worst = sorted(scores.items(), key=lambda item: item[1], reverse=True)[:TOP_FEATURES]
    return {"psi_max": worst[0][1], "n": int(x.shape[0]),
            "features": [{"feature": name, "psi": round(value, 6)} for name, value in worst]}
