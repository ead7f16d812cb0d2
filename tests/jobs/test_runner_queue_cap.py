"""The queue is capped (SEEDCORE_MAX_QUEUED_JOBS): a flood of concurrent submits over REST queues exactly the
cap and the rest get a 429 with `Retry-After` that leaves nothing behind; /xgboost/tune and /xgboost/train
meet the same cap; racing processes at the job store never overfill it; a schedule whose due time meets a
full queue records the run as skipped. On SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from _monitoring import TINY_TUNE, Clock, race, runner_submit, utc
from _pg import db, db_url  # noqa: F401  (fixtures)
from _tuning import FAST
from seedcore.api import create_app
from seedcore.db.database import Database
from seedcore.errors import QueueFullError
from seedcore.jobs.store import JobStore
from seedcore.monitoring.schedules import ScheduleBody, ScheduleService
from seedcore.services import services_of

pytestmark = pytest.mark.integration

CAP = 5


@pytest.fixture
def capped_app(settings, db, db_url):
    app = create_app(settings.replace(database_url=db_url, max_queued_jobs=CAP))
    app.config["TESTING"] = True
    services_of(app).runner.stop(timeout=5)  # nobody claims: every accepted job stays queued
    yield app
    services_of(app).stop()


def _queued(db) -> int:
    return JobStore(db).list(state="queued")["total"]


def _assert_queue_full(response) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) > 0
    body = response.get_json()
    assert body["status"] == "error" and "SEEDCORE_MAX_QUEUED_JOBS" in body["error"], body


def test_a_flood_of_concurrent_submits_queues_exactly_the_cap(capped_app, db):
    flood = 40
    barrier = threading.Barrier(flood)
    answers: list = [None] * flood

    def submit(i: int) -> None:
        client = capped_app.test_client()
        barrier.wait()
        answers[i] = client.post("/xgboost/tune/submit", json={**FAST, "experiment_name": f"flood_{i}"})

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(flood)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert Counter(a.status_code for a in answers) == {202: CAP, 429: flood - CAP}
    for answer in answers:
        if answer.status_code == 429:
            _assert_queue_full(answer)
    accepted = {a.get_json()["job_id"] for a in answers if a.status_code == 202}
    assert {job["id"] for job in JobStore(db).list(limit=500)["items"]} == accepted  # the refused left nothing
    assert _queued(db) == CAP

    client = capped_app.test_client()  # the synchronous endpoints meet the same cap, before any wait
    _assert_queue_full(client.post("/xgboost/tune", json={**FAST, "experiment_name": "sync"}))
    _assert_queue_full(client.post("/xgboost/train", json={"params": {"max_depth": 2, "num_boost_round": 3}}))
    assert _queued(db) == CAP

    JobStore(db).claim_next_queued(4242, "elsewhere")  # a runner elsewhere takes one: a place frees up
    assert client.post("/xgboost/tune/submit", json={**FAST, "experiment_name": "after"}).status_code == 202
    _assert_queue_full(client.post("/xgboost/tune/submit", json={**FAST, "experiment_name": "again"}))
    assert _queued(db) == CAP


def test_racing_processes_never_overfill_the_queue(db, db_url):
    racers = [Database(db_url) for _ in range(10)]  # each its own engine and connections: separate "processes"
    store = JobStore(db)
    for _ in range(CAP - 1):
        store.create({"n": 0}, max_queued=CAP)

    def attempt(database: Database) -> bool:
        try:
            JobStore(database).create({"n": 1}, max_queued=CAP)
        except QueueFullError:
            return False
        return True

    try:
        for round_ in range(4):  # each round one place is free, and all racers want it at the same moment
            won = race(*[lambda d=d: attempt(d) for d in racers])
            assert sum(won) == 1, f"round {round_}: {sum(won)} racers queued a job into one free place"
            assert _queued(db) == CAP
            store.claim_next_queued(4242, "elsewhere")
    finally:
        for database in racers:
            database.dispose()
    running = JobStore(db).list(state="running")["total"]
    assert running == 4 and _queued(db) == CAP - 1


def test_a_job_claimed_at_creation_is_not_held_back_by_a_full_queue(db):
    store = JobStore(db)
    for _ in range(CAP):
        store.create({}, max_queued=CAP)
    with pytest.raises(QueueFullError):
        store.create({}, max_queued=CAP)
    job = store.create({}, owner=(4242, "cli"), max_queued=CAP)  # the CLI's own sweep runs at once, here
    assert job["state"] == "running" and _queued(db) == CAP


def test_a_schedule_due_into_a_full_queue_records_a_skipped_run(settings, db, db_url):
    settings = settings.replace(database_url=db_url, max_queued_jobs=2)
    store = JobStore(db)
    for _ in range(2):
        store.create({}, max_queued=2)
    clock = Clock(utc(2026, 1, 5, 9, 30))
    service = ScheduleService(settings, db, runner_submit(settings, db), clock=clock)
    schedule = service.create(ScheduleBody(name="hourly", cron="0 * * * *", tune=TINY_TUNE))
    clock.value = utc(2026, 1, 5, 10, 0, 1)
    assert service.tick() == []
    seen = service.get(schedule["id"])
    assert seen["skipped_count"] == 1 and seen["last_skipped_at"] == "2026-01-05T10:00:01+00:00"
    assert "SEEDCORE_MAX_QUEUED_JOBS" in seen["last_skip_reason"] and seen["last_job_id"] is None
    assert seen["next_run_at"] == "2026-01-05T11:00:00+00:00"  # the due time is spent, not retried in a loop
    assert _queued(db) == 2
