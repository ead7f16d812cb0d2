"""The energy ledger's arithmetic on stored rows and its break-even incident, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from _pg import db, db_url  # noqa: F401  (fixtures: SQLite and PostgreSQL, migrated)
from seedcore.config import Settings
from seedcore.db.base import utcnow
from seedcore.db.tables_flywheel import PredictionRecord
from seedcore.db.tables_organism import VersionEnergy
from seedcore.jobs.kinds import JobContext
from seedcore.memory.events import BREAK_EVEN_MISSED
from seedcore.memory.store import IncidentStore
from seedcore.monitoring.predlog import new_prediction_id
from seedcore.organism.energy import EnergyMeter
from seedcore.organism.ledger import ledger, predictions_per_day

pytestmark = pytest.mark.integration
MODEL = "utility_risk_model"


@pytest.fixture
def settings(tmp_path, db_url):  # noqa: F811
    return Settings(data_dir=tmp_path / "data", mlruns_dir=tmp_path / "mlruns", database_url=db_url,
                    watts_per_cpu=4.0, joules_per_nat=2.0)


def _served(db, version: int, n: int, hours_ago: float = 1.0, label: int | None = None) -> None:  # noqa: F811
    at = utcnow() - timedelta(hours=hours_ago)
    with db.session() as session:
        for _ in range(n):
            session.add(PredictionRecord(id=new_prediction_id(at.timestamp()), model_name=MODEL, model_version=version,
                                         created_at=at, features=[0.0], prediction=0.7, label=label,
                                         labelled_at=None if label is None else at))


def test_pair_net_delta_and_break_even_from_the_stored_rows(settings, db):  # noqa: F811
    meter = EnergyMeter(settings, db)
    promoted = utcnow() - timedelta(days=2)
    meter.record_job("a" * 32, "succeeded", cpu_seconds=50.0, wall_seconds=20.0, processes=7,
                     started_at=promoted - timedelta(minutes=1), version=2)
    with db.session() as session:
        session.add(VersionEnergy(model_name=MODEL, version=2, promoted_at=promoted, previous_version=1,
                                  champion_logloss=0.6, challenger_logloss=0.5))
    _served(db, 2, 500, hours_ago=30)  # outside the last day: not counted
    _served(db, 2, 240, hours_ago=12)
    energy = ledger(settings, db, 2, holdout={"logloss": 0.5})
    assert energy["cpu_seconds"] == 50.0 and energy["joules"] == 200.0 and energy["wall_seconds"] == 20.0
    per_day = energy["predictions_per_day"]
    assert per_day == pytest.approx(240 / 0.5, rel=0.01)  # 240 in the 12 hours it has been logged
    assert energy["pair_source"] == "holdout" and energy["pair"] == pytest.approx(0.5 * per_day)
    saving = (0.6 - 0.5) * per_day * 2.0  # joules a day
    assert energy["net_delta_per_day"] == pytest.approx(saving)
    assert energy["net_delta"] == pytest.approx(saving * 2 - 200.0, rel=0.01)
    due = promoted + timedelta(days=200.0 / saving)
    assert abs((utcnow().fromisoformat(energy["break_even_at"]) - due).total_seconds()) < 1


def test_live_logloss_replaces_holdout_once_labels_arrive(settings, db):  # noqa: F811
    with db.session() as session:
        session.add(VersionEnergy(model_name=MODEL, version=3, promoted_at=utcnow() - timedelta(days=1),
                                  previous_version=2, champion_logloss=0.3))
    _served(db, 3, settings.live_min_rows, hours_ago=2, label=1)  # prediction 0.7, label 1: logloss -ln 0.7
    energy = ledger(settings, db, 3, holdout={"logloss": 0.1})
    assert energy["pair_source"] == "live" and energy["pair_logloss"] == pytest.approx(0.3567, abs=1e-3)
    assert energy["net_delta_per_day"] < 0 and energy["break_even_at"] is None and energy["paid_back"] is False


def test_a_missed_break_even_is_remembered_once(settings, db):  # noqa: F811
    meter = EnergyMeter(settings, db)
    with db.session() as session:
        session.add(VersionEnergy(model_name=MODEL, version=4, promoted_at=utcnow() - timedelta(days=3)))
    passed = (utcnow() - timedelta(hours=1)).isoformat()
    assert meter.check_break_even(4, {"break_even_at": (utcnow() + timedelta(days=1)).isoformat(),
                                      "net_delta": -1.0}) is None  # first projection kept; not due yet
    with db.session() as session:
        session.get(VersionEnergy, (MODEL, 4)).break_even_at = utcnow() - timedelta(hours=1)
    assert meter.check_break_even(4, {"break_even_at": passed, "net_delta": 5.0}) is None  # paid back
    incident = meter.check_break_even(4, {"break_even_at": passed, "net_delta": -3.0})
    assert incident is not None
    assert meter.check_break_even(4, {"break_even_at": passed, "net_delta": -3.0}) is None
    found = IncidentStore(db).query(event_type=BREAK_EVEN_MISSED)["items"]
    assert [i["id"] for i in found] == [incident] and found[0]["model_version"] == "4"


def test_no_predictions_no_pair_rate(settings, db):  # noqa: F811
    assert predictions_per_day(db, MODEL, 9) == 0.0
    assert ledger(settings, db, 9)["cpu_seconds"] is None



def test_the_promotion_incident_gets_the_ledger_as_of_then_from_memory(settings, db):  # noqa: F811
    meter = EnergyMeter(settings, db)
    with db.session() as session:
        session.add(VersionEnergy(model_name=MODEL, version=1, promoted_at=utcnow() - timedelta(days=1)))
    _served(db, 1, 240, hours_ago=12)  # 480 a day
    job_id = "b" * 32
    context = JobContext(settings, {"id": job_id}, threading.Event(), lambda _p: None, lambda: False,
                         lambda _f: None, None)
    end = meter.watch(context)  # reads the served version's traffic as the job starts
    _served(db, 1, 10_000, hours_ago=1)  # after the job started: the promotion does not read the database again
    record = {"version": 2, "previous_version": 1, "model_bytes": 1234,
              "challenger": {"logloss": 0.5}, "champion": {"logloss": 0.6}}
    energy = meter.at_promotion(record, job_id)["energy"]
    assert energy["as_of"] == "promotion" and energy["job_id"] == job_id and energy["mem_bytes"] == 1234
    assert energy["cpu_seconds"] >= 0 and energy["wall_seconds"] > 0
    assert energy["joules"] == pytest.approx(energy["cpu_seconds"] * 4.0)
    assert energy["predictions_per_day"] == pytest.approx(480, rel=0.01) and energy["pair"] == pytest.approx(240, rel=0.01)
    saving = (0.6 - 0.5) * 480 * 2.0
    assert energy["net_delta_per_day"] == pytest.approx(saving, rel=0.01)
    assert energy["net_delta_projected"] == pytest.approx(saving * 30 - energy["joules"], rel=0.01)
    assert energy["break_even_at"] is not None and "net_delta" not in energy
    elsewhere = meter.at_promotion({**record, "previous_version": 7}, None)["energy"]  # no job, other champion
    assert elsewhere["cpu_seconds"] is None and elsewhere["pair"] is None and elsewhere["mem_bytes"] == 1234
    end("succeeded", {"model_version": 2})
