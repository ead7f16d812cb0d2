"""Long-term memory: registry versions joined with our SQL (live by day, evaluations, job, trigger, energy),
on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from _pg import db, db_url  # noqa: F401  (fixtures)
from _serving import add_version
from seedcore.db.base import utcnow
from seedcore.db.tables_flywheel import ModelEvaluation, PredictionRecord
from seedcore.jobs.store import JobStore
from seedcore.memory.history import daily_live, history_page
from seedcore.monitoring.predlog import new_prediction_id
from seedcore.organism.energy import EnergyMeter
from seedcore.promotion.registry import Registry
from seedcore.scoring import roc_auc

pytestmark = pytest.mark.integration


def _labelled(db, name, version, day_offset, pairs):  # noqa: F811
    at = utcnow().replace(hour=12) - timedelta(days=day_offset)
    with db.session() as session:
        for p, y in pairs:
            session.add(PredictionRecord(id=new_prediction_id(at.timestamp()), model_name=name, model_version=version,
                                         created_at=at, features=[0.0], prediction=p, label=y, labelled_at=at))


def test_daily_live_figures_per_utc_day(db):  # noqa: F811
    _labelled(db, "m", 1, 2, [(0.9, 1), (0.2, 0), (0.6, 0), (0.7, 1)])
    _labelled(db, "m", 1, 0, [(0.9, 1), (0.8, 1)])  # one class only: no AUC that day
    _labelled(db, "m", 2, 0, [(0.1, 1)])  # another version
    days = daily_live(db, "m", 1)
    assert [d["n"] for d in days] == [4, 2] and days[0]["day"] < days[1]["day"]
    assert days[0]["auc"] == pytest.approx(roc_auc([1, 0, 0, 1], [0.9, 0.2, 0.6, 0.7])) and days[1]["auc"] is None


def test_history_joins_the_registry_with_jobs_energy_evaluations_and_outcomes(settings, db, db_url):  # noqa: F811
    settings = settings.replace(database_url=db_url)
    registry = Registry(settings)
    first, _ = add_version(settings, registry, rounds=5)
    second, _ = add_version(settings, registry, seed=1, rounds=8)
    job = JobStore(db).create({"experiment_name": "x"}, experiment_name="x", trigger="schedule:nightly")
    EnergyMeter(settings, db).record_job(job["id"], "succeeded", 12.0, 30.0, 5, utcnow(), second)
    with db.session() as session:
        session.add(ModelEvaluation(model_name=settings.model_name, model_version=first, data_source="eval.csv",
                                    rows=10, metrics={"auc": 0.7, "logloss": 0.6}, calibration=[]))
    _labelled(db, settings.model_name, first, 1, [(0.8, 1), (0.3, 0)])

    items = history_page(db, settings.model_name, registry.list_versions(limit=10)["items"])
    newest, oldest = items
    assert [newest["version"], oldest["version"]] == [second, first]
    assert newest["trigger"] == "schedule:nightly" and newest["job_id"] == job["id"]
    assert newest["energy"] == {"cpu_seconds": 12.0, "wall_seconds": 30.0, "joules": 12.0 * settings.watts_per_cpu}
    assert newest["hyperparameters"]["max_depth"] == 2 and newest["dataset"]["fingerprint"]
    assert oldest["energy"] is None and oldest["trigger"] is None
    assert oldest["evaluations"][0]["auc"] == 0.7 and oldest["live"][0]["n"] == 2 and newest["live"] == []
    assert history_page(db, settings.model_name, []) == []
