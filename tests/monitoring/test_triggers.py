"""Triggered sweeps have a budget: unauthenticated predict traffic that drifts makes a psi_max monitor fire at
most its `max_sweeps_per_day`; schedules and monitors together start at most
SEEDCORE_MAX_TRIGGERED_SWEEPS_PER_DAY in any 24 hours (API and manual jobs, and jobs older than a day, do not
count); a refusal is a `triggered_sweep_refused` incident (once per refused stretch) and a log line; triggers
racing in separate processes never overspend. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from _monitoring import TINY_TUNE, Clock, jobs, race, runner_submit, utc
from _pg import db, db_url  # noqa: F401  (fixtures)
from _serving import add_version, holdout_rows
from seedcore.api import create_app
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.jobs.store import JobStore
from seedcore.memory.store import IncidentStore
from seedcore.monitoring.drift import MIN_ROWS
from seedcore.monitoring.monitors import MonitorBody, MonitorService
from seedcore.monitoring.predlog import PredictionLogger
from seedcore.promotion.registry import Registry
from seedcore.monitoring.schedules import ScheduleBody, ScheduleService
from seedcore.services import services_of

pytestmark = pytest.mark.integration

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DRIFT = {"name": "drift", "metric": "psi_max", "threshold": 0.25, "min_samples": 50, "cooldown_s": 0,
         "tune": TINY_TUNE}
REFUSED = "triggered_sweep_refused"


def _refusals(db) -> list[dict]:
    return IncidentStore(db).query(event_type=REFUSED, limit=500)["items"]


def _shifted(settings, n: int = MIN_ROWS) -> list[list[float]]:
    rows = holdout_rows(settings, n).copy()
    rows[:, 0] += 3.0  # f0 far outside what the model was trained on: PSI well above 0.25
    return rows.tolist()


@pytest.fixture
def served(settings, db, db_url):
    """A promoted, served version behind a token; the server's runner is stopped, so its jobs stay queued."""
    settings = settings.replace(database_url=db_url, api_token=TOKEN)
    version, _ = add_version(settings, Registry(settings), rounds=10)
    app = create_app(settings)
    app.config["TESTING"] = True
    services_of(app).runner.stop(timeout=5)
    client = app.test_client()
    assert client.post("/xgboost/refresh_model", headers=AUTH).get_json()["model_version"] == version
    yield settings, app, client
    services_of(app).stop()


def test_drifting_anonymous_traffic_fires_a_monitor_at_most_its_budget(served, db, caplog):
    settings, app, client = served
    predicted = client.post("/xgboost/predict", json={"instances": _shifted(settings)})  # no token
    assert predicted.status_code == 200, predicted.get_json()
    assert services_of(app).prediction_log.flush(20)
    created = client.post("/xgboost/monitors", json={**DRIFT, "max_sweeps_per_day": 1}, headers=AUTH)
    assert created.status_code == 201, created.get_json()
    monitor = created.get_json()
    assert monitor["max_sweeps_per_day"] == 1
    check = f"/xgboost/monitors/{monitor['id']}/check"

    first = client.post(check, headers=AUTH).get_json()
    assert first["state"] == "breached" and first["fired"] and first["value"] > 1.0
    JobStore(db).finish(first["job_id"], "succeeded", result={})  # the sweep ran: nothing else holds it back

    with caplog.at_level(logging.INFO, logger="seedcore.monitoring.triggers"):
        second = client.post(check, headers=AUTH).get_json()
        third = client.post(check, headers=AUTH).get_json()
    assert second["state"] == third["state"] == "breached"
    assert not second["fired"] and not third["fired"]
    assert [job["id"] for job in jobs(db)] == [first["job_id"]]
    assert "max_sweeps_per_day" in client.get(f"/xgboost/monitors/{monitor['id']}").get_json()["last_error"]

    (refused,) = _refusals(db)  # remembered once, though refused at both checks
    assert refused["salience"] == 0.5 and refused["outcome"] == "refused"
    payload = refused["payload"]
    assert payload["trigger"] == f"monitor:{monitor['id']}" and payload["source_name"] == "drift"
    assert (payload["scope"], payload["used"], payload["limit"]) == ("monitor", 1, 1)
    lines = [r for r in caplog.records if "triggered sweep refused" in r.getMessage()]
    assert len(lines) == 2 and lines[0].levelno == logging.WARNING and lines[0].trigger == payload["trigger"]

    patched = client.patch(f"/xgboost/monitors/{monitor['id']}", json={"max_sweeps_per_day": 2}, headers=AUTH)
    assert patched.status_code == 200 and patched.get_json()["max_sweeps_per_day"] == 2
    assert client.post(check, headers=AUTH).get_json()["fired"]  # a bigger budget: it fires again
    bad = client.patch(f"/xgboost/monitors/{monitor['id']}", json={"max_sweeps_per_day": 0}, headers=AUTH)
    assert bad.status_code == 400 and bad.get_json()["field"] == "max_sweeps_per_day"


def test_the_budget_of_all_triggers_stops_schedules_then_monitors(settings, db, db_url, caplog):
    settings = settings.replace(database_url=db_url, max_triggered_sweeps_per_day=2)
    store = JobStore(db)
    for trigger in ("api", "api", "manual"):  # what people ask for is not the triggers' budget
        store.create({}, trigger=trigger)
    old = JobStore(db, clock=lambda: utcnow() - timedelta(hours=25))
    for _ in range(3):  # a day old: out of the window
        old.create({}, trigger="schedule:long-gone")

    clock = Clock(utc(2026, 6, 1, 12, 0, 30))
    submit = runner_submit(settings, db)
    schedules = ScheduleService(settings, db, submit, clock=clock)
    schedule = schedules.create(ScheduleBody(name="busy", cron="* * * * *", tune=TINY_TUNE,
                                             concurrency_policy="allow"))
    with caplog.at_level(logging.INFO):
        started = []
        for _ in range(5):
            clock.advance(minutes=1)
            started.append(len(schedules.tick()))
    assert started == [1, 1, 0, 0, 0]
    seen = schedules.get(schedule["id"])
    assert seen["skipped_count"] == 3 and "SEEDCORE_MAX_TRIGGERED_SWEEPS_PER_DAY" in seen["last_skip_reason"]
    (refused,) = _refusals(db)
    assert refused["payload"]["trigger"] == f"schedule:{schedule['id']}"
    assert (refused["payload"]["scope"], refused["payload"]["used"], refused["payload"]["limit"]) == ("all", 2, 2)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("schedule run skipped" in m for m in messages) == 3
    assert sum("triggered sweep refused" in m for m in messages) == 3

    # The same budget holds a monitor back: production drifts, the monitor breaches, nothing starts.
    add_version(settings, Registry(settings), rounds=10)
    rows = _shifted(settings)
    logger = PredictionLogger(settings, lambda: Database(settings.database_url))
    logger.log(settings.model_name, 1, rows, [0.5] * len(rows))
    assert logger.flush(20)
    logger.stop()
    monitors = MonitorService(settings, db, submit, clock=clock)
    monitor = monitors.create(MonitorBody(**DRIFT))
    outcome = monitors.check(monitor["id"])
    assert outcome["state"] == "breached" and not outcome["fired"]
    assert "SEEDCORE_MAX_TRIGGERED_SWEEPS_PER_DAY" in monitors.get(monitor["id"])["last_error"]
    assert {r["payload"]["trigger"] for r in _refusals(db)} == {f"schedule:{schedule['id']}",
                                                                f"monitor:{monitor['id']}"}
    triggered = [job for job in jobs(db) if job["trigger"] not in ("api", "manual")]
    assert len(triggered) == 2 + 3  # the two of today, the three of yesterday


def test_racing_triggers_in_separate_processes_never_overspend(settings, db, db_url):
    settings = settings.replace(database_url=db_url, max_triggered_sweeps_per_day=2)
    clock = Clock(utc(2026, 6, 1, 12, 0, 30))
    seeding = ScheduleService(settings, db, runner_submit(settings, db), clock=clock)
    for i in range(4):  # four schedules due at the same minute
        seeding.create(ScheduleBody(name=f"s{i}", cron="* * * * *", tune=TINY_TUNE))
    dbs = [Database(db_url) for _ in range(4)]
    services = [ScheduleService(settings, d, runner_submit(settings, d), clock=clock) for d in dbs]
    try:
        clock.advance(minutes=1)
        started = race(*[service.tick for service in services])
    finally:
        for d in dbs:
            d.dispose()
    assert sum(len(s) for s in started) == 2
    assert len(jobs(db)) == 2
    skipped = [s for s in seeding.list() if s["skipped_count"]]
    assert len(skipped) == 2 and all("SEEDCORE_MAX_TRIGGERED_SWEEPS_PER_DAY" in s["last_skip_reason"]
                                     for s in skipped)
