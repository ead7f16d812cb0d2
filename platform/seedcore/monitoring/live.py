"""What production looks like now: live metrics and drift for a served version, as model_info shows them."""

from __future__ import annotations

import logging

from seedcore.config import Settings
from seedcore.db.database import Database
from seedcore.errors import SeedcoreError
from seedcore.monitoring.drift import drift_report
from seedcore.promotion.drift_reference import load_reference, store_reference
from seedcore.monitoring.feedback import live_metrics, recent_inputs
from seedcore.names import AUC, LOGLOSS

log = logging.getLogger(__name__)

LIVE, HOLDOUT = "live", "holdout"


def version_reference(db: Database, settings: Settings, version: int) -> dict | None:
    """The version's reference bins; computed from its training split once if registration did not store them."""
    bins = load_reference(db, settings.model_name, version)
    if bins is not None:
        return bins
    from seedcore.promotion.registry import Registry

    registry = Registry(settings)
    try:
        dataset = registry.dataset_of(registry.get_version(version))
    except SeedcoreError as exc:
        log.warning("no drift reference for version %s: %s", version, exc.message)
        return None
    return store_reference(db, settings.model_name, version, dataset)


def version_drift(db: Database, settings: Settings, version: int, feature_names, rows: int | None = None,
                  hours: float | None = None) -> dict | None:
    """PSI of the version's recent logged inputs per feature (worst first); None without rows or reference."""
    x = recent_inputs(db, settings.model_name, version, rows or settings.live_window_rows, hours)
    if x.size == 0:
        return None
    return drift_report(version_reference(db, settings, version), feature_names, x)


def live_view(db: Database, settings: Settings, version: int, holdout: dict) -> dict:
    """model_info's `metrics`: the live AUC and logloss once `live_min_rows` labels arrived, else holdout's."""
    live = live_metrics(db, settings.model_name, version, rows=settings.live_window_rows)
    if live["n"] >= settings.live_min_rows and live[AUC] is not None:
        return {AUC: live[AUC], LOGLOSS: live[LOGLOSS], "source": LIVE, "n": live["n"]}
    return {AUC: holdout.get(AUC), LOGLOSS: holdout.get(LOGLOSS), "source": HOLDOUT, "n": live["n"]}


def enrich_model_info(info: dict, db: Database | None, settings: Settings) -> dict:
    """`info` with live `metrics` (holdout figures stay under `holdout`) and `drift`; unchanged on any failure."""
    version = info.get("version")
    if db is None or version is None:
        return info
    holdout = info.get("holdout") or {}
    try:
        metrics = live_view(db, settings, int(version), holdout)
        drift = version_drift(db, settings, int(version), info.get("feature_names") or [])
    except SeedcoreError as exc:  # the log store is down: model_info still answers, with holdout figures
        log.warning("live metrics unavailable: %s", exc.message)
        return {**info, "metrics": {**holdout, "source": HOLDOUT, "n": None}, "drift": None}
    return {**info, "metrics": metrics, "drift": drift}
