"""`estimated_auc`: the AUC a model should have on unlabelled rows, from its own predicted probabilities.

Confidence-based performance estimation: once the probabilities are calibrated (isotonic regression on the
version's holdout, fitted once and kept in `energy_versions.calibration`), row i is a positive with
probability p_i. The expected ROC curve counts p_i as a true positive and 1 - p_i as a false positive above
each threshold; its area is the estimate. It holds under covariate shift (P(x) moves, P(y|x) stays); a
concept shift (P(y|x) moves) leaves the probabilities, and so the estimate, unchanged: only labels see it.

    calibration = fit_calibration(holdout_scores, holdout_labels)
    expected_auc(scores, calibrate(calibration, scores))
    estimated_auc(db, registry, version, rows=500)   # the monitor metric: (estimate, rows used, detail)
"""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import select

from seedcore.db.database import Database
from seedcore.db.tables_flywheel import PredictionRecord
from seedcore.db.tables_organism import VersionEnergy
from seedcore.errors import SeedcoreError
from seedcore.monitoring.feedback import windowed

log = logging.getLogger(__name__)

MAX_POINTS = 256  # the stored calibration's steps at most (a holdout of any size stays a small JSON)


def fit_calibration(scores, labels) -> dict:
    """Isotonic regression (pool adjacent violators) of `labels` on `scores`: the steps as {"x", "y"}."""
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="mergesort")
    x = np.asarray(scores, dtype=np.float64)[order]
    y = np.asarray(labels, dtype=np.float64)[order]
    values, weights, lows, highs = [], [], [], []
    for xi, yi in zip(x, y):
        values.append(yi), weights.append(1.0), lows.append(xi), highs.append(xi)
        while len(values) > 1 and values[-2] >= values[-1]:
            w = weights[-2] + weights[-1]
            merged = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            high = highs[-1]
            for column in (values, weights, lows, highs):
                column.pop()
            values[-1], weights[-1], highs[-1] = merged, w, high
    centers = [(lo + hi) / 2.0 for lo, hi in zip(lows, highs)]
    if len(centers) > MAX_POINTS:
        keep = np.unique(np.linspace(0, len(centers) - 1, MAX_POINTS).round().astype(int))
        centers, values = [centers[i] for i in keep], [values[i] for i in keep]
    return {"x": [float(c) for c in centers], "y": [float(v) for v in values], "n": int(len(x))}


def calibrate(calibration: dict, scores) -> np.ndarray:
    """Calibrated probabilities for `scores`: linear between the steps' centres, flat beyond them."""
    return np.interp(np.asarray(scores, dtype=np.float64), calibration["x"], calibration["y"])


def expected_auc(scores, probabilities) -> float | None:
    """The expected AUC of ranking by `scores` when row i is positive with probability `probabilities[i]`;
    None when the rows cannot hold both classes."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    q = 1.0 - p
    if s.size < 2 or p.sum() <= 0 or q.sum() <= 0:
        return None
    order = np.argsort(s, kind="mergesort")
    s, p, q = s[order], p[order], q[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # groups of tied scores
    group_q = np.add.reduceat(q, starts)
    below = np.r_[0.0, np.cumsum(group_q)[:-1]]  # expected negatives strictly below each group
    group_of = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, s.size]))
    # a positive row beats every negative below it, ties half; a row is never paired with itself
    wins = p * (below[group_of] + 0.5 * (group_q[group_of] - q))
    pairs = p.sum() * q.sum() - float(np.dot(p, q))
    return float(wins.sum() / pairs) if pairs > 0 else None


def estimate_from_scores(calibration: dict, scores) -> float | None:
    scores = np.asarray(scores, dtype=np.float64)
    return expected_auc(scores, calibrate(calibration, scores))


# -- the monitor metric ------------------------------------------------------------------------------
def version_calibration(db: Database, registry, version: int) -> dict | None:
    """The version's holdout calibration; fitted on the version's holdout (read back through the process's
    `registry`) and kept the first time it is asked for; None when the registry cannot give it (logged)."""
    with db.session() as session:
        row = session.get(VersionEnergy, (registry.name, version))
        if row is not None and row.calibration:
            return dict(row.calibration)
    try:
        mv = registry.get_version(version)
        dataset, booster = registry.dataset_of(mv), registry.load_booster(mv)
    except SeedcoreError as exc:
        log.warning("no calibration for version %s: %s", version, exc.message)
        return None
    calibration = fit_calibration(booster.inplace_predict(dataset.x_holdout), dataset.y_holdout)
    store_calibration(db, registry.name, version, calibration)
    return calibration


def store_calibration(db: Database, model_name: str, version: int, calibration: dict) -> None:
    with db.session() as session:
        row = session.get(VersionEnergy, (model_name, version))
        if row is None:
            session.add(VersionEnergy(model_name=model_name, version=version, calibration=calibration))
        else:
            row.calibration = calibration


def recent_scores(db: Database, model_name: str, version: int, rows: int | None, hours: float | None) -> np.ndarray:
    """The version's latest logged predictions (labelled or not)."""
    query = select(PredictionRecord.prediction).where(PredictionRecord.model_name == model_name,
                                                      PredictionRecord.model_version == version)
    with db.session() as session:
        found = session.scalars(windowed(query, rows, hours, PredictionRecord.created_at, None)).all()
    return np.asarray(found, dtype=np.float64)


def estimated_auc(db: Database, registry, version: int, rows: int | None,
                  hours: float | None = None) -> tuple[float | None, int, dict | None]:
    """The monitor metric: (estimate, rows it used, detail) over the version's last `rows` predictions."""
    scores = recent_scores(db, registry.name, version, rows, hours)
    if scores.size == 0:
        return None, 0, None
    calibration = version_calibration(db, registry, version)
    if calibration is None:
        return None, 0, None
    value = estimate_from_scores(calibration, scores)
    return value, int(scores.size), {"calibration_rows": calibration.get("n")}
