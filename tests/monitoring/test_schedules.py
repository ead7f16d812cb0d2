"""Schedules: a due time fires exactly once with two processes racing (SQLite and PostgreSQL), the
catch-up policy after downtime, pause/resume, and bad input refused with nothing stored."""

from __future__ import annotations

import pytest

from _monitoring import TINY_TUNE, Clock, jobs, race, runner_submit, utc
from _pg import db, db_url  # noqa: F401  (fixtures)
from seedcore.db.database import Database
from seedcore.errors import ValidationError
from seedcore.monitoring.schedules import ScheduleBody, SchedulePatch, ScheduleService

pytestmark = pytest.mark.integration

# `allow`: each due time starts its job though the earlier ones stay queued (no runner runs them here).
HOURLY = {"name": "hourly", "cron": "0 * * * *", "timezone": "UTC", "tune": TINY_TUNE, "concurrency_policy": "allow"}


def _two_services(settings, db_url, clock):
    """Two independent "processes": each its own engine, job runner and service, one shared clock."""
    dbs = [Database(db_url), Database(db_url)]
    services = [ScheduleService(settings, d, runner_submit(settings, d), clock=clock) for d in dbs]
    return services, dbs


def test_a_due_time_fires_exactly_once_with_two_runners_racing(settings, db, db_url):
    clock = Clock(utc(2026, 1, 5, 9, 30))
    settings = settings.replace(database_url=db_url)
    (first, second), dbs = _two_services(settings, db_url, clock)
    schedule = first.create(ScheduleBody(**HOURLY))
    assert schedule["next_run_at"] == "2026-01-05T10:00:00+00:00"
    try:
        for hour in range(10, 15):  # five due times, each raced by both
            clock.value = utc(2026, 1, 5, hour, 0, 1)
            started = race(first.tick, second.tick)
            assert sum(len(s) for s in started) == 1, f"due {hour}:00 started {started}"
        assert first.get(schedule["id"])["next_run_at"] == "2026-01-05T15:00:00+00:00"
    finally:
        for d in dbs:
            d.dispose()
    made = jobs(db)
    assert len(made) == 5
    assert {job["trigger"] for job in made} == {f"schedule:{schedule['id']}"}


@pytest.mark.parametrize("policy, expected_runs", [("run_once", 1), ("skip", 0)])
def test_catch_up_after_downtime(settings, db, db_url, policy, expected_runs):
    clock = Clock(utc(2026, 1, 5, 9, 30))
    service = ScheduleService(settings.replace(database_url=db_url), db, runner_submit(settings, db), clock=clock)
    schedule = service.create(ScheduleBody(**HOURLY, catch_up=policy))
    clock.value = utc(2026, 1, 5, 16, 20)  # down from 9:30 to 16:20: seven due times missed
    started = service.tick()
    assert len(started) == expected_runs
    assert service.get(schedule["id"])["next_run_at"] == "2026-01-05T17:00:00+00:00"
    assert service.tick() == []  # nothing more until 17:00
    clock.value = utc(2026, 1, 5, 17, 0, 5)
    assert len(service.tick()) == 1  # on time again: runs whatever the policy
    assert len(jobs(db)) == expected_runs + 1


def test_time_zone_and_pause_resume(settings, db, db_url):
    clock = Clock(utc(2026, 7, 1, 0, 0))  # summer: Paris is UTC+2
    service = ScheduleService(settings.replace(database_url=db_url), db, runner_submit(settings, db), clock=clock)
    schedule = service.create(ScheduleBody(name="nightly", cron="0 2 * * *", timezone="Europe/Paris", tune=TINY_TUNE))
    assert schedule["next_run_at"] == "2026-07-02T00:00:00+00:00"  # 02:00 in Paris, strictly after now
    paused = service.update(schedule["id"], SchedulePatch(enabled=False))
    clock.value = utc(2026, 7, 3, 12, 0)
    assert service.tick() == [] and jobs(db) == []
    resumed = service.update(schedule["id"], SchedulePatch(enabled=True))
    assert not paused["enabled"] and resumed["enabled"]
    assert resumed["next_run_at"] == "2026-07-04T00:00:00+00:00"  # 02:00 in Paris, from now: no catch-up of the pause


@pytest.mark.parametrize("change, field", [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "every monday"}, "cron"),
    ({"cron": "* * * * * *"}, "cron"),
    ({"cron": "0 0 31 2 *"}, "cron"),  # valid syntax, never due
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"tune": {"space_type": "huge"}}, "tune.space_type"),
    ({"tune": {"custom_tune_config": {"num_samples": 10**9}}}, "tune.custom_tune_config.num_samples"),
    ({"tune": {"data_source": "../etc/passwd", "label_column": "y"}}, "tune.data_source"),
])
def test_bad_schedules_are_refused_and_nothing_is_stored(settings, db, db_url, change, field):
    service = ScheduleService(settings.replace(database_url=db_url), db, runner_submit(settings, db))
    with pytest.raises(ValidationError) as caught:
        service.create(ScheduleBody.model_validate({**HOURLY, **change}))
    assert caught.value.field == field or caught.value.field.startswith(field), caught.value.field
    assert service.list() == []
    assert jobs(db) == []


def test_the_flywheel_loop_starts_a_due_schedule(settings, db, db_url):
    import time

    from seedcore.monitoring.loops import start_loop
    from seedcore.monitoring.monitors import MonitorService

    clock = Clock(utc(2026, 1, 5, 9, 30))
    settings = settings.replace(database_url=db_url)
    submit = runner_submit(settings, db)
    schedules = ScheduleService(settings, db, submit, clock=clock)
    schedules.create(ScheduleBody(**HOURLY))
    stop = start_loop(schedules, MonitorService(settings, db, submit), interval_s=0.1)
    try:
        time.sleep(0.5)
        assert jobs(db) == []  # not due yet
        clock.value = utc(2026, 1, 5, 10, 0, 1)
        deadline = time.monotonic() + 10
        while not jobs(db) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop()
    assert len(jobs(db)) == 1
