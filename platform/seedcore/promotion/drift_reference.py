"""A registered version's drift reference: its training split's distribution as quantile bins per feature,
stored in SQL once it is registered; monitoring (seedcore.monitoring.drift) measures logged inputs against it."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from seedcore.datasets import Dataset
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import DriftReference
from seedcore.errors import SeedcoreError

N_BINS = 10


def reference_bins(x_train: np.ndarray, feature_names, n_bins: int = N_BINS) -> dict:
    """Per feature: inner quantile edges of the training split and the share of rows in each bin."""
    features = {}
    for j, name in enumerate(feature_names):
        column = x_train[:, j].astype(np.float64)
        column = column[~np.isnan(column)]
        edges = np.unique(np.quantile(column, np.linspace(0, 1, n_bins + 1)[1:-1])) if column.size else np.array([])
        features[name] = {"edges": edges.tolist(), "expected": shares(column, edges).tolist()}
    return {"features": features, "rows": int(len(x_train))}


def shares(column: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1)
    return counts / max(1, counts.sum())


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
