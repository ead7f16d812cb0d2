"""Monitors on a real production version: a breach fires once across racing processes, the cooldown and an
active job hold it back, too few samples never fire, drift fires on shifted inputs, bad monitors are refused."""

from __future__ import annotations

import numpy as np
import pytest

from _monitoring import TINY_TUNE, Clock, jobs, race, runner_submit, utc
from _pg import db, db_url  # noqa: F401  (fixtures)
from _serving import add_version
from seedcore.datasets import load_dataset
from seedcore.db.database import Database
from seedcore.errors import ValidationError
from seedcore.jobs.store import JobStore
from seedcore.memory.store import IncidentStore
from seedcore.monitoring.drift import MIN_ROWS
from seedcore.monitoring.feedback import record_feedback
from seedcore.monitoring.monitors import MonitorBody, MonitorService
from seedcore.monitoring.predlog import PredictionLogger
from seedcore.promotion.registry import Registry

pytestmark = pytest.mark.integration

LIVE_AUC = {"name": "auc-guard", "metric": "live_auc", "threshold": 0.9, "min_samples": 50,
            "window": {"rows": 200}, "cooldown_s": 600, "tune": TINY_TUNE}


@pytest.fixture
def production(settings, db_url):
    """A promoted version and the settings that point at this test's database."""
    settings = settings.replace(database_url=db_url)
    version, booster = add_version(settings, Registry(settings), rounds=10)
    return settings, version, booster


def _serve_and_label(settings, db, version, booster, n=120, flip=True, shift=0.0):
    """Log `n` holdout rows as predictions of `version`; send labels (flipped: the model is now wrong)."""
    data = load_dataset(settings.data_dir)
    x = data.x_holdout[:n].copy()
    x[:, 0] += shift
    logger = PredictionLogger(settings, lambda: Database(settings.database_url))
    ids = logger.log(settings.model_name, version, x.tolist(), booster.inplace_predict(x).tolist())
    assert logger.flush(20)
    logger.stop()
    y = data.y_holdout[:n].astype(int)
    labels = (1 - y if flip else y).tolist()
    record_feedback(db, settings, ids, labels)


def test_a_breach_fires_once_then_waits_for_its_job_and_the_cooldown(production, db, db_url):
    settings, version, booster = production
    _serve_and_label(settings, db, version, booster)
    clock = Clock(utc(2026, 3, 1, 12, 0))
    dbs = [Database(db_url), Database(db_url)]
    a, b = (MonitorService(settings, d, runner_submit(settings, d), clock=clock) for d in dbs)
    monitor = a.create(MonitorBody(**LIVE_AUC))
    try:
        first = race(lambda: a.check(monitor["id"]), lambda: b.check(monitor["id"]))
    finally:
        for d in dbs:
            d.dispose()
    assert [o["state"] for o in first] == ["breached", "breached"]
    assert sorted(o["fired"] for o in first) == [False, True]
    assert first[0]["value"] < 0.5 and first[0]["n"] == 120
    made = jobs(db)
    assert len(made) == 1 and made[0]["trigger"] == f"monitor:{monitor['id']}"
    incidents = IncidentStore(db).query(event_type="model_degradation_detected")["items"]
    assert len(incidents) == 1 and incidents[0]["payload"]["job_id"] == made[0]["id"]
    assert incidents[0]["salience"] >= 0.9  # AUC far below 0.9

    service = MonitorService(settings, db, runner_submit(settings, db), clock=clock)
    clock.advance(seconds=3600)  # past the cooldown, but the job is still queued
    assert service.check(monitor["id"])["fired"] is False
    JobStore(db).finish(made[0]["id"], "failed", error="test")
    clock.advance(seconds=1)
    assert service.check(monitor["id"])["fired"] is True  # job over, cooldown over: fires again
    JobStore(db).finish(jobs(db)[0]["id"], "failed", error="test")
    clock.advance(seconds=60)
    assert service.check(monitor["id"])["fired"] is False  # within the cooldown
    assert len(jobs(db)) == 2
    assert service.get(monitor["id"])["last_value"] == pytest.approx(first[0]["value"])


def test_too_few_samples_never_fire(production, db):
    settings, version, booster = production
    _serve_and_label(settings, db, version, booster, n=30)
    service = MonitorService(settings, db, runner_submit(settings, db))
    monitor = service.create(MonitorBody(**LIVE_AUC))
    outcome = service.check(monitor["id"])
    assert outcome["state"] == "insufficient_data" and outcome["n"] == 30 and not outcome["fired"]
    assert jobs(db) == []


def test_max_drop_is_relative_to_the_holdout_and_a_healthy_model_stays_quiet(production, db):
    settings, version, booster = production
    _serve_and_label(settings, db, version, booster, flip=False)
    service = MonitorService(settings, db, runner_submit(settings, db))
    monitor = service.create(MonitorBody(**{**LIVE_AUC, "threshold": None, "max_drop": 0.1}))
    outcome = service.check(monitor["id"])
    assert outcome["state"] == "ok" and not outcome["fired"] and jobs(db) == []


def test_drift_on_shifted_inputs_fires_a_drift_incident(production, db):
    settings, version, booster = production
    _serve_and_label(settings, db, version, booster, n=MIN_ROWS, flip=False, shift=3.0)
    service = MonitorService(settings, db, runner_submit(settings, db))
    monitor = service.create(MonitorBody(name="drift", metric="psi_max", threshold=0.25, min_samples=50,
                                         tune=TINY_TUNE))
    outcome = service.check(monitor["id"])
    assert outcome["fired"] and outcome["value"] > 1.0
    incident = IncidentStore(db).query(event_type="drift_detected")["items"][0]
    assert incident["payload"]["drift"]["features"][0]["feature"] == "f0"


def test_drift_over_too_few_rows_never_fires_whatever_min_samples(production, db):
    settings, version, booster = production
    _serve_and_label(settings, db, version, booster, n=5, flip=False, shift=3.0)
    service = MonitorService(settings, db, runner_submit(settings, db))
    monitor = service.create(MonitorBody(name="thin", metric="psi_max", threshold=0.25, min_samples=1, tune=TINY_TUNE))
    outcome = service.check(monitor["id"])
    assert outcome["state"] == "insufficient_data" and not outcome["fired"] and outcome["value"] is None
    assert outcome["n"] == 5 and jobs(db) == []


@pytest.mark.parametrize("change, field", [
    ({"max_drop": 0.1}, "threshold"),                        # both rules
    ({"threshold": None}, "threshold"),                      # neither
    ({"metric": "psi_max", "threshold": None, "max_drop": 0.1}, "max_drop"),
    ({"tune": {"space_type": "enormous"}}, "tune.space_type"),
    ({"tune": {"custom_search_space": {"eta": {"type": "uniform", "lower": 2, "upper": 1}}}}, "tune.custom_search_space"),
    ({"tune": {"data_source": "missing.csv", "label_column": "y"}}, "tune.data_source"),
])
def test_bad_monitors_are_refused_and_nothing_is_stored(settings, db, db_url, change, field):
    service = MonitorService(settings.replace(database_url=db_url), db, runner_submit(settings, db))
    with pytest.raises(ValidationError) as caught:
        service.create(MonitorBody.model_validate({**LIVE_AUC, **change}))
    assert caught.value.field.startswith(field), caught.value.field
    assert service.list() == [] and jobs(db) == []


def test_an_evaluation_below_threshold_fires_the_evaluation_monitor(production, db):
    from seedcore.monitoring.evaluate import evaluate_version

    settings, version, _ = production
    service = MonitorService(settings, db, runner_submit(settings, db))
    monitor = service.create(MonitorBody(name="eval", metric="evaluation_auc", threshold=0.99, min_samples=100,
                                         tune=TINY_TUNE))
    assert service.check(monitor["id"])["state"] == "insufficient_data"  # no evaluation yet
    result = evaluate_version(settings, db, None)
    outcome = service.check(monitor["id"])
    assert outcome["fired"] and outcome["value"] == pytest.approx(result["metrics"]["auc"])
    assert outcome["n"] == result["metrics"]["rows"] and result["model_version"] == version
