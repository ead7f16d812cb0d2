"""JobStore: the tuning job queue in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event

from _pg import db, db_url  # noqa: F401  (fixtures)
from seedcore.errors import ConflictError, NotFoundError, ValidationError
from seedcore.jobs.store import (
    INTERRUPTED,
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JobStore,
    local_process_alive,
)
from seedcore.db.database import Database

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
HOST = socket.gethostname()


class Clock:
    """A clock that ticks one second per reading, so creation order is unambiguous."""

    def __init__(self):
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def jobs(db):
    return JobStore(db, clock=Clock())


def _create(jobs, n=1, trials=4):
    return [jobs.create({"n": i, "space": {"max_depth": [2, 4]}}, "exp", trials) for i in range(n)]


def test_job_lifecycle_queued_running_succeeded(jobs):
    job = _create(jobs)[0]
    assert len(job["id"]) == 32 and job["job_id"] == job["id"]
    assert (job["state"], job["trials_done"], job["trials_total"]) == (JOB_QUEUED, 0, 4)
    assert job["request"] == {"n": 0, "space": {"max_depth": [2, 4]}}
    assert job["started_at"] is None and job["cancel_requested"] is False

    claimed = jobs.claim_next_queued(pid=4242, host="runner-1")
    assert claimed["id"] == job["id"]
    assert (claimed["state"], claimed["owner_pid"], claimed["owner_host"]) == (JOB_RUNNING, 4242, "runner-1")
    assert claimed["started_at"] is not None

    jobs.update_progress(job["id"], 2, 4, 0.81, parent_run_id="run-abc")
    jobs.update_progress(job["id"], 3, 4, None)  # best_auc and parent run are kept
    progress = jobs.get(job["id"])
    assert (progress["trials_done"], progress["best_auc"], progress["mlflow_parent_run_id"]) == (3, 0.81, "run-abc")

    done = jobs.finish(job["id"], JOB_SUCCEEDED, result={"best_auc": 0.83, "version": "2"})
    assert done["state"] == JOB_SUCCEEDED and done["result"] == {"best_auc": 0.83, "version": "2"}
    assert datetime.fromisoformat(done["finished_at"]) > datetime.fromisoformat(done["started_at"])
    with pytest.raises(ConflictError):
        jobs.finish(job["id"], JOB_FAILED, error="late")
    with pytest.raises(ConflictError):
        jobs.update_progress(job["id"], 4, 4, 0.9)
    assert jobs.get(job["id"])["state"] == JOB_SUCCEEDED


def test_failed_job_keeps_its_error(jobs):
    job = _create(jobs)[0]
    jobs.claim_next_queued(1, HOST)
    failed = jobs.finish(job["id"], JOB_FAILED, error="no trial produced a model")
    assert (failed["state"], failed["error"]) == (JOB_FAILED, "no trial produced a model")


def test_unknown_job_is_404(jobs):
    for call in (jobs.get, jobs.request_cancel, jobs.is_cancel_requested, jobs.mark_interrupted):
        with pytest.raises(NotFoundError) as caught:
            call("0" * 32)
        assert caught.value.status_code == 404
    with pytest.raises(NotFoundError):
        jobs.finish("nope", JOB_FAILED)


@pytest.mark.parametrize(
    "args, field",
    [(("not a dict", "exp", 1), "request"), (({}, "exp", -1), "trials_total"), (({}, "exp", 1.5), "trials_total")],
)
def test_create_rejects_bad_input(jobs, args, field):
    with pytest.raises(ValidationError) as caught:
        jobs.create(*args)
    assert caught.value.field == field
    assert jobs.list()["total"] == 0


def test_finish_rejects_a_non_final_state(jobs):
    job = _create(jobs)[0]
    with pytest.raises(ValidationError) as caught:
        jobs.finish(job["id"], JOB_RUNNING)
    assert caught.value.field == "state"
    assert jobs.get(job["id"])["state"] == JOB_QUEUED


def test_list_is_newest_first_paginated_and_filterable(jobs):
    ids = [job["id"] for job in _create(jobs, 5)]
    page = jobs.list(limit=2, offset=1)
    assert [item["id"] for item in page["items"]] == ids[::-1][1:3]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    jobs.claim_next_queued(1, HOST)
    running = jobs.list(state=JOB_RUNNING)
    assert [item["id"] for item in running["items"]] == [ids[0]] and running["total"] == 1
    with pytest.raises(ValidationError):
        jobs.list(limit=0)
    with pytest.raises(ValidationError):
        jobs.list(state="paused")


def test_claim_takes_the_oldest_queued_first(jobs):
    ids = [job["id"] for job in _create(jobs, 3)]
    claimed = [jobs.claim_next_queued(7, HOST)["id"] for _ in ids]
    assert claimed == ids
    assert jobs.claim_next_queued(7, HOST) is None


def test_claim_skips_a_job_another_runner_took_in_between(db, jobs):
    """Deterministic race: runner B claims the oldest job after A has read it but before A's UPDATE."""
    first, second = (job["id"] for job in _create(jobs, 2))
    other = Database(db.url)
    runner_b = JobStore(other)
    won_by_b = []

    def let_b_claim_first(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE") and not won_by_b:
            won_by_b.append(runner_b.claim_next_queued(2, "runner-b")["id"])

    event.listen(db.engine, "before_cursor_execute", let_b_claim_first)
    try:
        won_by_a = jobs.claim_next_queued(1, "runner-a")
    finally:
        event.remove(db.engine, "before_cursor_execute", let_b_claim_first)
        other.dispose()
    assert won_by_b == [first]
    assert won_by_a["id"] == second and won_by_a["owner_host"] == "runner-a"
    assert jobs.get(first)["owner_host"] == "runner-b"


def test_concurrent_claims_get_distinct_jobs(db, jobs):
    ids = {job["id"] for job in _create(jobs, 12)}
    databases = [Database(db.url) for _ in range(4)]
    start = threading.Barrier(len(databases))
    claims: list[list[str]] = [[] for _ in databases]
    errors: list[BaseException] = []

    def runner(index: int) -> None:
        store = JobStore(databases[index])
        try:
            start.wait()
            while (job := store.claim_next_queued(index, f"runner-{index}")) is not None:
                claims[index].append(job["id"])
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(len(databases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for database in databases:
        database.dispose()
    assert errors == []
    everything = [job_id for claimed in claims for job_id in claimed]
    assert len(everything) == len(set(everything)) == len(ids)
    assert set(everything) == ids
    for index, claimed in enumerate(claims):
        assert all(jobs.get(job_id)["owner_host"] == f"runner-{index}" for job_id in claimed)


def test_cancel_a_queued_job_cancels_it_at_once(jobs):
    job = _create(jobs)[0]
    cancelled = jobs.request_cancel(job["id"])
    assert (cancelled["state"], cancelled["cancel_requested"]) == (JOB_CANCELLED, True)
    assert cancelled["finished_at"] is not None
    assert jobs.claim_next_queued(1, HOST) is None


def test_cancel_a_running_job_asks_its_runner(jobs):
    job = _create(jobs)[0]
    jobs.claim_next_queued(1, HOST)
    assert jobs.is_cancel_requested(job["id"]) is False
    asked = jobs.request_cancel(job["id"])
    assert (asked["state"], asked["cancel_requested"]) == (JOB_RUNNING, True)
    assert jobs.is_cancel_requested(job["id"]) is True
    assert jobs.request_cancel(job["id"])["state"] == JOB_RUNNING  # asking twice is harmless
    assert jobs.finish(job["id"], JOB_CANCELLED)["state"] == JOB_CANCELLED


@pytest.mark.parametrize("final", [JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED])
def test_cancel_a_finished_job_is_a_conflict(jobs, final):
    job = _create(jobs)[0]
    jobs.claim_next_queued(1, HOST)
    jobs.finish(job["id"], final)
    with pytest.raises(ConflictError) as caught:
        jobs.request_cancel(job["id"])
    assert caught.value.status_code == 409 and final in caught.value.message
    assert jobs.get(job["id"])["state"] == final


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_find_and_mark_interrupted_jobs(jobs):
    dead_job, live_job, remote_job, queued_job = (job["id"] for job in _create(jobs, 4))
    jobs.claim_next_queued(_dead_pid(), HOST)
    jobs.claim_next_queued(os.getpid(), HOST)
    jobs.claim_next_queued(_dead_pid(), "some-other-machine")  # cannot tell from here: assumed alive

    interrupted = jobs.find_interrupted(local_process_alive)
    assert [job["id"] for job in interrupted] == [dead_job]
    assert local_process_alive(os.getpid(), HOST) and not local_process_alive(None, HOST)

    marked = jobs.mark_interrupted(dead_job)
    assert (marked["state"], marked["error"]) == (JOB_FAILED, INTERRUPTED)
    assert marked["finished_at"] is not None
    assert jobs.find_interrupted(local_process_alive) == []
    with pytest.raises(ConflictError):
        jobs.mark_interrupted(dead_job)
    with pytest.raises(ConflictError):
        jobs.mark_interrupted(queued_job)
    everyone_dead = jobs.find_interrupted(lambda pid, host: False)
    assert {job["id"] for job in everyone_dead} == {live_job, remote_job}
