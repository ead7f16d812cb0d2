"""The job runner never dies and nobody waits forever: a failing database step is retried with backoff and
reported by status() and /health; waits follow the job's row in SQL with a deadline; synchronous waits are
bounded in number (429 + Retry-After) and in time (202 + the job id); /xgboost/train runs as a job."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from _tuning import FAST, job_rows, mlflow_client, wait_for
from seedcore.api import create_app
from seedcore.db.database import Database
from seedcore.errors import SweepFailedError
from seedcore.request_models import TrainRequest, TuneRequest
from seedcore.jobs.runner import JobRunner, JobStillRunning
from seedcore.services import services_of

pytestmark = pytest.mark.integration

TINY = {"eta": 0.3, "max_depth": 2, "num_boost_round": 5}


@pytest.fixture
def db(migrated_settings):
    database = Database(migrated_settings.database_url)
    yield database
    database.dispose()


def _app(settings, **changes):
    app = create_app(settings.replace(**changes))
    app.config["TESTING"] = True
    return app


def _stop(app) -> None:
    services_of(app).stop()


def test_a_claim_that_fails_is_retried_and_reported_and_the_runner_runs_the_next_job(migrated_settings, db):
    with db.engine.begin() as connection:  # the jobs table is away: every claim fails
        connection.execute(text("ALTER TABLE tuning_jobs RENAME TO tuning_jobs_away"))
    runner = JobRunner(migrated_settings, db, poll_s=0.1).start()
    try:
        status = wait_for(lambda: "claim a job" in ((s := runner.status())["last_error"] or "") and s, 10,
                          "the claim error to be reported")
        assert "no such table" in status["last_error"] and status["last_error_at"]
        assert status["alive"] is True and status["threads"] == 1  # the loop survived the error

        with db.engine.begin() as connection:
            connection.execute(text("ALTER TABLE tuning_jobs_away RENAME TO tuning_jobs"))
        job = runner.submit(TrainRequest(params=TINY))
        finished = runner.wait(job["id"], timeout=120)
        assert finished["state"] == "succeeded" and finished["kind"] == "train"
        assert finished["result"]["model_version"] == 1
    finally:
        runner.stop()
    assert runner.status()["alive"] is False


def test_wait_follows_the_row_in_sql_and_has_a_deadline(migrated_settings, db):
    """No thread of this process runs the job: the waiter still sees another process finish it."""
    runner = JobRunner(migrated_settings, db)  # never started: nobody here will run the job
    job = runner.submit(TuneRequest(**FAST, experiment_name="elsewhere"))
    with pytest.raises(JobStillRunning) as still:
        runner.wait(job["id"], timeout=0.3)
    assert still.value.job["state"] == "queued"

    other = JobRunner(migrated_settings, Database(migrated_settings.database_url))  # "another process"
    claimed = other.jobs.claim_next_queued(4242, "elsewhere")
    finisher = threading.Timer(0.5, other.jobs.finish, args=(claimed["id"], "failed"),
                               kwargs={"error": "boom elsewhere"})
    finisher.start()
    with pytest.raises(SweepFailedError, match="boom elsewhere"):
        runner.wait(job["id"], timeout=30)
    finisher.join()
    other.jobs.db.dispose()


def test_synchronous_waits_beyond_the_cap_are_429_with_retry_after_and_create_nothing(migrated_settings):
    app = _app(migrated_settings, max_sync_waits=1)
    try:
        runner = services_of(app).runner
        with runner.sync_slot():  # one request already waits
            answer = app.test_client().post("/xgboost/tune", json={**FAST, "experiment_name": "crowded"})
            trained = app.test_client().post("/xgboost/train", json={"params": TINY})
        for response in (answer, trained):
            assert response.status_code == 429, response.get_data(as_text=True)
            assert int(response.headers["Retry-After"]) > 0
            body = response.get_json()
            assert body["status"] == "error" and "/xgboost/tune/submit" in body["error"]
        assert job_rows(migrated_settings) == []
    finally:
        _stop(app)


def test_a_synchronous_wait_past_its_time_answers_202_with_the_job_id(migrated_settings):
    app = _app(migrated_settings, sync_wait_timeout_s=0.5)
    try:
        services_of(app).runner.stop(timeout=5)  # no runner thread: the job stays queued
        response = app.test_client().post("/xgboost/tune", json={**FAST, "experiment_name": "slow"})
        assert response.status_code == 202, response.get_data(as_text=True)
        body = response.get_json()
        assert body["state"] == "queued" and body["status_url"].endswith(body["job_id"])
        assert response.headers["Location"] == body["status_url"]
        assert [row["id"] for row in job_rows(migrated_settings)] == [body["job_id"]]
        with services_of(app).runner.sync_slot():
            pass  # the slot was given back
    finally:
        _stop(app)


def test_train_runs_as_a_job_of_kind_train_and_answers_as_before(client, migrated_settings):
    response = client.post("/xgboost/train", json={"params": TINY, "experiment_name": "as_a_job"})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "success" and body["model_version"] == 1 and body["promotion"]["status"] == "skipped"
    (job,) = job_rows(migrated_settings)
    assert (job["kind"], job["trigger"], job["state"]) == ("train", "api", "succeeded")
    assert job["result"]["mlflow"]["run_id"] == body["mlflow"]["run_id"]
    health = client.get("/health").get_json()
    assert health["runner"]["alive"] is True and health["runner"]["current_job"] is None


def test_train_past_the_time_cap_is_a_400_naming_the_rounds_and_its_run_is_not_left_running(migrated_settings):
    app = _app(migrated_settings, max_time_budget_s=0.05)
    try:
        response = app.test_client().post("/xgboost/train", json={
            "params": {"eta": 0.001, "max_depth": 8, "num_boost_round": 10_000}, "experiment_name": "endless"})
        assert response.status_code == 400, response.get_data(as_text=True)
        assert response.get_json()["field"] == "params.num_boost_round"
        (job,) = job_rows(migrated_settings)
        assert job["state"] == "failed" and "time cap" in job["error"]
        client = mlflow_client(migrated_settings)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert runs and all(run.info.status != "RUNNING" for run in runs)
    finally:
        _stop(app)
