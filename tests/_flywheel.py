"""Helpers for the promotion tests: what a user reading the blessed path sees, registered versions,
faults injected at one exact filesystem step, the promotion incidents.

Import into a test module (`from _flywheel import ...`).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import xgboost as xgb

from _serving import GUIDE_ROW, add_version, holdout_rows  # noqa: F401  (re-exported for the tests)
from seedcore import names
from seedcore.memory.store import IncidentStore
from seedcore.db.database import Database


def blessed_as_read(settings) -> tuple[dict, xgb.Booster]:
    """What anyone reading the guide's paths gets: the metadata and the model under utility_risk_model_latest/."""
    metadata = json.loads((settings.blessed_dir / names.METADATA_FILE).read_text())
    booster = xgb.Booster()
    booster.load_model(bytearray((settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes()))
    return metadata, booster


def same_predictions(a: xgb.Booster, b: xgb.Booster, rows: np.ndarray) -> bool:
    return bool(np.array_equal(a.inplace_predict(rows), b.inplace_predict(rows)))


def published_dirs(settings, version: int | None = None) -> list[Path]:
    """The versioned directories published under <data>/models (of `version`, or all)."""
    pattern = f"utility_risk_model_v{version}_*" if version is not None else "utility_risk_model_v*"
    return sorted(p for p in settings.models_dir.glob(pattern) if p.is_dir() and not p.is_symlink())


def promotion_incidents(settings) -> list[dict]:
    """model_promoted / model_promotion_rejected incidents, oldest first."""
    store = IncidentStore(Database(settings.database_url))
    items = store.query(limit=500)["items"]
    chosen = [i for i in items if i["event_type"] in ("model_promoted", "model_promotion_rejected")]
    return sorted(chosen, key=lambda i: i["id"])


@contextmanager
def failing_replace(monkeypatch, target_name: str):
    """Make `os.replace` fail (disk full) whenever it would replace a file or link named `target_name`."""
    real = os.replace
    hits = []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == target_name:
            hits.append(str(dst))
            raise OSError(28, "No space left on device", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    try:
        yield hits
    finally:
        monkeypatch.setattr(os, "replace", real)
