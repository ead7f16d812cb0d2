"""The monitor metric estimated_auc: a degradation fires with no label in the database, on SQLite and
PostgreSQL (real registry, model, prediction log)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from _monitoring import TINY_TUNE, jobs, runner_submit
from _pg import db, db_url  # noqa: F401  (fixtures)
from _serving import add_version
from seedcore.datasets import load_dataset
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import PredictionRecord
from seedcore.db.tables_organism import VersionEnergy
from seedcore.monitoring.monitors import MonitorBody, MonitorService
from seedcore.monitoring.predlog import PredictionLogger
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.integration
GUARD = {"name": "estimate-guard", "metric": "estimated_auc", "max_drop": 0.1, "min_samples": 50,
         "window": {"rows": 200}, "cooldown_s": 600, "tune": TINY_TUNE}


@pytest.fixture
def production(settings, db_url):  # noqa: F811
    settings = settings.replace(database_url=db_url)
    version, booster = add_version(settings, Registry(settings), rounds=30, depth=3)
    return settings, version, booster


def _log(settings, version, booster, x) -> None:
    logger = PredictionLogger(settings, lambda: Database(settings.database_url))
    logger.log(settings.model_name, version, x.tolist(), booster.inplace_predict(x).tolist())
    assert logger.flush(20)
    logger.stop()


def test_estimated_auc_follows_the_inputs_and_fires_before_any_label(production, db):  # noqa: F811
    settings, version, booster = production
    service = MonitorService(settings, db, runner_submit(settings, db))
    monitor = service.create(MonitorBody(**GUARD))
    holdout_auc = service.registry.describe(service.registry.get_version(version))["holdout"]["auc"]

    data = load_dataset(settings.data_dir)
    _log(settings, version, booster, data.x_holdout[:150])  # production as trained
    calm = service.check(monitor["id"])
    assert calm["state"] == "ok" and calm["n"] == 150 and abs(calm["value"] - holdout_auc) < 0.1
    with db.session() as session:  # the holdout calibration was fitted once and kept
        assert session.get(VersionEnergy, (settings.model_name, version)).calibration["n"] == len(data.y_holdout)

    # the traffic moves to where the model cannot tell the classes apart (its scores near the middle)
    x = np.concatenate([data.x_train, data.x_valid])
    scores = booster.inplace_predict(x)
    unsure = x[np.argsort(np.abs(scores - np.median(scores)))[:200]]
    _log(settings, version, booster, unsure)
    breached = service.check(monitor["id"])
    assert breached["state"] == "breached" and breached["fired"] is True and breached["value"] < holdout_auc - 0.1
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(PredictionRecord)
                              .where(PredictionRecord.label.is_not(None))) == 0  # no feedback at all
    assert [j["trigger"] for j in jobs(db)] == [f"monitor:{monitor['id']}"]
