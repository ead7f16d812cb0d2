"""Drift without labels: each version's training distribution as quantile bins, and the population
stability index (PSI) of recent logged inputs against it, per feature.

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

Below 0.1 is usually read as stable, 0.1-0.25 as a moderate shift, above 0.25 as a significant one.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from seedcore.datasets import Dataset
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import DriftReference
from seedcore.errors import SeedcoreError

N_BINS = 10
_EPS = 1e-4  # a bin no row fell into still counts a little, so the logarithm stays finite
TOP_FEATURES = 5


def reference_bins(x_train: np.ndarray, feature_names, n_bins: int = N_BINS) -> dict:
    """Per feature: inner quantile edges of the training split and the share of rows in each bin."""
    features = {}
    for j, name in enumerate(feature_names):
        column = x_train[:, j].astype(np.float64)
        column = column[~np.isnan(column)]
        edges = np.unique(np.quantile(column, np.linspace(0, 1, n_bins + 1)[1:-1])) if column.size else np.array([])
        features[name] = {"edges": edges.tolist(), "expected": _shares(column, edges).tolist()}
    return {"features": features, "rows": int(len(x_train))}


def _shares(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1)
    return counts / max(1, counts.sum())


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


def store_reference(db: Database, model_name: str, version: int, dataset: Dataset) -> dict:
    """Keep the version's reference bins (from its training split); an existing one is kept as is."""
    bins = reference_bins(dataset.x_train, dataset.feature_names)
    with db.session() as session:
        if session.get(DriftReference, (model_name, int(version))) is None:
            session.add(DriftReference(model_name=model_name, model_version=int(version), bins=bins,
                                       created_at=utcnow()))
    return bins


def load_reference(db: Database, model_name: str, version: int) -> dict | None:
    with db.session() as session:
        return session.scalar(select(DriftReference.bins).where(DriftReference.model_name == model_name,
                                                                 DriftReference.model_version == int(version)))


def remember_reference(settings, version, dataset: Dataset, db: Database | None = None) -> dict:
    """After registering a version: store its reference bins (in `db`, or over a connection of its own) and
    return them; raises our errors unless another process stored them meanwhile."""
    own = db is None
    db = Database(settings.database_url) if own else db
    try:
        try:
            return store_reference(db, settings.model_name, int(version), dataset)
        except SeedcoreError:
            stored = load_reference(db, settings.model_name, int(version))
            if stored is None:
                raise
            return stored
    finally:
        if own:
            db.dispose()


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
