"""Drift without labels: the population stability index (PSI) of recent logged inputs against each version's
training distribution (its quantile bins, seedcore.promotion.drift_reference), per feature.

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

Below 0.1 is usually read as stable, 0.1-0.25 as a moderate shift, above 0.25 as a significant one.

Over a handful of rows the PSI is noise (one row fills one bin and leaves nine empty: PSI ~8 on every feature).
Below MIN_ROWS logged rows there is no number, only "not enough rows (n of MIN_ROWS)"; a psi_max monitor finds
no value then and stays `insufficient_data`, whatever its own `min_samples`.
"""

from __future__ import annotations

import numpy as np

from seedcore.promotion.drift_reference import N_BINS
from seedcore.promotion.drift_reference import shares as _shares

_EPS = 1e-4  # a bin no row fell into still counts a little, so the logarithm stays finite
TOP_FEATURES = 5
# Twenty rows expected in each of the reference's N_BINS quantile bins. The PSI of n rows of an unchanged
# population is about chi-square with N_BINS - 1 degrees of freedom over n: (N_BINS - 1) / n = 0.045 on average
# here; with the reference's own sampling noise (built-in data: 1,000 training rows) a feature averages 0.08
# and psi_max over ten features 0.16, under the 0.25 read as a significant shift. At 10 a bin (100 rows),
# psi_max already averages about 0.25 (at 50 rows, 0.6): a psi_max monitor at 0.25 would fire on noise.
MIN_ROWS = 20 * N_BINS


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
    """`{"psi_max", "n", "features": [worst first]}` for logged inputs `x`; None without a reference or rows;
    below MIN_ROWS rows `psi_max` is None, `features` empty and `status` says how many rows there are."""
    if bins is None or x.size == 0:
        return None
    if x.shape[0] < MIN_ROWS:
        return {"psi_max": None, "n": int(x.shape[0]), "min_rows": MIN_ROWS, "features": [],
                "status": f"not enough rows ({int(x.shape[0])} of {MIN_ROWS})"}
    scores = psi_by_feature(bins, feature_names, x)
    if not scores:
        return None
    worst = sorted(scores.items(), key=lambda item: item[1], reverse=True)[:TOP_FEATURES]
    return {"psi_max": worst[0][1], "n": int(x.shape[0]), "min_rows": MIN_ROWS, "status": "measured",
            "features": [{"feature": name, "psi": round(value, 6)} for name, value in worst]}
