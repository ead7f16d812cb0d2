"""A schedule's concurrency policy (as a Kubernetes CronJob): a `* * * * *` schedule whose job still waits
does not pile up jobs (`forbid`, the default), records every skipped run where GET shows it, and starts again
once its job is over; `allow` starts one per due time; `replace` cancels the waiting or running job and
starts a new one. The policy travels through REST (create, patch, OpenAPI) and the CLI; bad values are a
400 naming the field. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import pytest

from _monitoring import TINY_TUNE, Clock, jobs, utc
from _pg import db, db_url  # noqa: F401  (fixtures)
from seedcore.api import create_app
from seedcore.cli import main
from seedcore.jobs.store import JobStore
from seedcore.jobs.runner import JobRunner
from seedcore.monitoring.schedules import ScheduleService
from seedcore.services import services_of

pytestmark = pytest.mark.integration

EVERY_MINUTE = {"name": "every-minute", "cron": "* * * * *", "timezone": "UTC", "tune": TINY_TUNE}
TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def flywheel(settings, db, db_url):
    """The API (token on, its runner stopped so jobs stay queued) and a schedule service on a test clock,
    over the same database; the service cancels through a job runner, as `seedcore up` does."""
    settings = settings.replace(database_url=db_url, api_token=TOKEN)
    app = create_app(settings)
    app.config["TESTING"] = True
    services_of(app).runner.stop(timeout=5)
    runner = JobRunner(settings, db)  # never started: it queues and cancels in SQL
    clock = Clock(utc(2026, 1, 1))  # set by _create

    def submit(request, trigger):
        return runner.submit(request, trigger=trigger)
    yield app.test_client(), ScheduleService(settings, db, submit, clock=clock, cancel=runner.cancel), clock
    services_of(app).stop()


def _minutes(service: ScheduleService, clock: Clock, n: int) -> list[list[dict]]:
    """Tick once in each of the next `n` minutes, one second after the due time."""
    started = []
    for _ in range(n):
        clock.value = clock.value.replace(second=0) + timedelta(minutes=1, seconds=1)
        started.append(service.tick())
    return started


def _create(client, clock: Clock, **fields) -> dict:
    """Create over REST (the server's clock), then set the test clock to half a minute before its first due time."""
    answer = client.post("/xgboost/schedules", json={**EVERY_MINUTE, **fields}, headers=AUTH)
    assert answer.status_code == 201, answer.get_json()
    clock.value = datetime.fromisoformat(answer.get_json()["next_run_at"]) - timedelta(seconds=30)
    return answer.get_json()


def _at(due: datetime, minutes: int) -> str:
    return (due + timedelta(minutes=minutes, seconds=1)).isoformat()


def test_forbid_skips_runs_while_the_job_waits_and_shows_them(flywheel, db, caplog):
    client, service, clock = flywheel
    schedule = _create(client, clock)
    first_due = datetime.fromisoformat(schedule["next_run_at"])
    assert schedule["concurrency_policy"] == "forbid" and schedule["skipped_count"] == 0
    with caplog.at_level(logging.WARNING, logger="seedcore.monitoring.schedules"):
        started = _minutes(service, clock, 6)
    assert [len(s) for s in started] == [1, 0, 0, 0, 0, 0]  # not one job a minute
    (first,) = jobs(db)
    assert first["state"] == "queued" and first["trigger"] == f"schedule:{schedule['id']}"

    seen = client.get(f"/xgboost/schedules/{schedule['id']}").get_json()
    assert seen["skipped_count"] == 5
    assert seen["last_skipped_at"] == _at(first_due, 5)
    assert first["id"] in seen["last_skip_reason"] and "forbid" in seen["last_skip_reason"]
    assert seen["last_job_id"] == first["id"] and seen["last_run_at"] == _at(first_due, 0)
    skipped = [r for r in caplog.records if "schedule run skipped" in r.getMessage()]
    assert len(skipped) == 5 and skipped[0].schedule_id == schedule["id"]

    JobStore(db).finish(first["id"], "failed", error="over")  # its job is over: the next due time runs
    assert [len(s) for s in _minutes(service, clock, 1)] == [1]
    assert len(jobs(db)) == 2
    assert client.get(f"/xgboost/schedules/{schedule['id']}").get_json()["skipped_count"] == 5


def test_allow_starts_a_job_at_every_due_time(flywheel, db):
    client, service, clock = flywheel
    schedule = _create(client, clock, concurrency_policy="allow")
    assert [len(s) for s in _minutes(service, clock, 4)] == [1, 1, 1, 1]
    assert [job["state"] for job in jobs(db)] == ["queued"] * 4
    assert client.get(f"/xgboost/schedules/{schedule['id']}").get_json()["skipped_count"] == 0


def test_replace_cancels_the_waiting_or_running_job_and_starts_a_new_one(flywheel, db):
    client, service, clock = flywheel
    schedule = _create(client, clock, concurrency_policy="replace")
    (a,), (b,) = _minutes(service, clock, 2)
    store = JobStore(db)
    assert store.get(a["id"])["state"] == "cancelled" and store.get(b["id"])["state"] == "queued"

    claimed = store.claim_next_queued(4242, "elsewhere")  # a runner in another process is running b
    assert claimed["id"] == b["id"]
    ((c,),) = _minutes(service, clock, 1)
    running = store.get(b["id"])
    assert running["state"] == "running" and running["cancel_requested"] is True  # its runner stops it
    assert store.get(c["id"])["state"] == "queued"
    assert [j["id"] for j in jobs(db) if j["state"] in ("queued", "running") and not j["cancel_requested"]] \
        == [c["id"]]
    assert client.get(f"/xgboost/schedules/{schedule['id']}").get_json()["last_job_id"] == c["id"]


def test_the_policy_through_rest_patch_openapi_and_bad_values(flywheel, db):
    client, service, clock = flywheel
    schedule = _create(client, clock)
    path = f"/xgboost/schedules/{schedule['id']}"
    patched = client.patch(path, json={"concurrency_policy": "replace"}, headers=AUTH)
    assert patched.status_code == 200 and patched.get_json()["concurrency_policy"] == "replace"
    assert service.get(schedule["id"])["concurrency_policy"] == "replace"

    for bad in ("sometimes", None, 1):
        answer = client.patch(path, json={"concurrency_policy": bad}, headers=AUTH)
        assert answer.status_code == 400, answer.get_json()
        assert answer.get_json()["field"] == "concurrency_policy"
    refused = client.post("/xgboost/schedules", json={**EVERY_MINUTE, "name": "x", "concurrency_policy": "Forbid"},
                          headers=AUTH)
    assert refused.status_code == 400 and refused.get_json()["field"] == "concurrency_policy"
    assert [s["id"] for s in client.get("/xgboost/schedules").get_json()["items"]] == [schedule["id"]]
    assert service.get(schedule["id"])["concurrency_policy"] == "replace"

    document = client.get("/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    body = next(s for name, s in schemas.items() if name.startswith("ScheduleBody"))
    assert body["properties"]["concurrency_policy"]["enum"] == ["forbid", "allow", "replace"]
    assert body["properties"]["concurrency_policy"]["default"] == "forbid"
    response = schemas["ScheduleResponse"]["properties"]
    assert {"concurrency_policy", "skipped_count", "last_skipped_at", "last_skip_reason"} <= set(response)


def test_the_policy_from_the_cli(settings, monkeypatch, capsys):
    monkeypatch.setenv("SEEDCORE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SEEDCORE_MLRUNS_DIR", str(settings.mlruns_dir))
    body = {"name": "nightly", "cron": "0 2 * * *", "tune": TINY_TUNE, "concurrency_policy": "allow"}
    assert main(["schedules", "create", json.dumps(body)]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["concurrency_policy"] == "allow" and created["skipped_count"] == 0
    assert main(["schedules", "update", created["id"], json.dumps({"concurrency_policy": "never"})]) == 2
    assert json.loads(capsys.readouterr().err)["field"] == "concurrency_policy"
    assert main(["schedules", "show", created["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["concurrency_policy"] == "allow"
