"""The organism through the API: a sweep's energy in model_info, history and evolution (and the baselines it is
measured against when asked), working memory's ETags and invalidation, on SQLite and PostgreSQL (real Ray,
MLflow, XGBoost, Flask)."""

from __future__ import annotations

import time

import pytest

from _pg import sql_backend  # noqa: F401  (fixture: these tests on SQLite and PostgreSQL)
from _tuning import FAST, mlflow_client, production_version
from seedcore.api import create_app
from seedcore.datasets import load_dataset
from seedcore.db.base import utcnow
from seedcore.db.database import Database
from seedcore.db.tables_jobs import TuningJob
from seedcore.db.tables_organism import JobEnergy, VersionEnergy
from seedcore.memory.events import PROMOTION_ENERGY
from seedcore.memory.store import IncidentStore
from seedcore.organism.evolution import curve_stats
from seedcore.request_models import TuneRequest
from seedcore.services import services_of

pytestmark = pytest.mark.integration
ENERGY_KEYS = {"cpu_seconds", "wall_seconds", "joules", "mem_bytes", "pair", "net_delta", "break_even_at"}


@pytest.fixture
def organism(migrated_settings, ray_session):
    settings = migrated_settings.replace(live_min_rows=20)
    app = create_app(settings)
    app.config["TESTING"] = True
    yield settings, app, app.test_client()
    services_of(app).stop()


def _until(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _job_row(db, job_id) -> dict | None:
    with db.session() as session:
        row = session.get(JobEnergy, job_id)
        return row and row.to_dict()


def _version_row(db, settings, version) -> dict:
    with db.session() as session:  # a session of its own each time: nothing cached from an earlier read
        row = session.get(VersionEnergy, (settings.model_name, version))
        return {} if row is None else {"mem_bytes": row.mem_bytes, "calibration": row.calibration}


def test_a_sweep_is_measured_and_remembered(organism):
    settings, app, client = organism
    db = Database(settings.database_url)
    answer = client.post("/xgboost/tune", json={**FAST, "experiment_name": "organism"})
    assert answer.status_code == 200, answer.get_json()
    result = answer.get_json()
    version, job_id = result["model_version"], result["job_id"]

    job = _until(lambda: _job_row(db, job_id))  # written once the job's end is recorded, after its answer
    assert job["model_version"] == version and job["state"] == "succeeded"
    assert 0 < job["cpu_seconds"] and 0 < job["wall_seconds"] and job["processes"] > 1  # Ray's processes counted
    assert job["joules"] == pytest.approx(job["cpu_seconds"] * settings.watts_per_cpu)
    _until(lambda: _version_row(db, settings, version).get("mem_bytes"))  # from a thread after the promotion

    client.post("/xgboost/refresh_model")  # changes nothing: the ledger's writes dropped working memory's entries
    info = client.get("/xgboost/model_info")
    energy = info.get_json()["energy"]
    assert ENERGY_KEYS <= set(energy) and energy["job_id"] == job_id
    assert energy["cpu_seconds"] == job["cpu_seconds"] and energy["mem_bytes"] > 1000
    assert energy["pair_source"] == "holdout" and energy["previous_version"] is None and energy["net_delta"] is None
    assert client.get("/xgboost/model_info", headers={"If-None-Match": info.headers["ETag"]}).status_code == 304

    client_ = mlflow_client(settings)
    run_id = client_.get_model_version(settings.model_name, str(version)).run_id
    metrics = _until(lambda: client_.get_run(run_id).data.metrics.get("energy_joules") and client_.get_run(run_id).data.metrics)
    assert metrics["energy_joules"] == pytest.approx(job["joules"])
    logged = _until(lambda: client_.get_run(run_id).data.metrics.get("evolution_curve_area") is not None
                    and client_.get_run(run_id).data.metrics)  # the sweep's evolution axes, charted by MLflow's UI
    assert 0 < logged["evolution_curve_area"] <= 1 and logged["evolution_trials_to_99"] >= 1
    calibration = _until(lambda: _version_row(db, settings, version).get("calibration"))  # for estimated_auc
    assert calibration["n"] == result["dataset"]["rows"]["holdout"]
    kept = _until(lambda: IncidentStore(db).query(event_type=PROMOTION_ENERGY)["items"])
    assert [i["model_version"] for i in kept] == [str(version)] and kept[0]["payload"]["energy"]["joules"] == job["joules"]
    promoted = IncidentStore(db).query(event_type="model_promoted")["items"]  # the ledger as of the promotion
    at = promoted[0]["payload"]["energy"]
    assert at["as_of"] == "promotion" and at["job_id"] == job_id and at["mem_bytes"] > 1000
    assert 0 < at["cpu_seconds"] <= job["cpu_seconds"] and 0 < at["wall_seconds"] <= job["wall_seconds"]
    assert at["joules"] == pytest.approx(at["cpu_seconds"] * settings.watts_per_cpu)

    page = client.get("/xgboost/history?limit=5").get_json()
    item = page["items"][0]
    assert page["total"] == 1 and page["next_offset"] is None and item["version"] == version
    assert item["trigger"] == "api" and item["energy"]["joules"] == job["joules"]
    assert item["dataset"]["fingerprint"] == result["dataset"]["fingerprint"] and "eta" in item["hyperparameters"]

    evolution = client.get("/xgboost/evolution").get_json()
    sweep = evolution["sweeps"][0]
    assert sweep["version"] == version and sweep["trials"] == result["total_trials"]
    assert 0 < sweep["curve_area"] <= 1 and 1 <= sweep["trials_to_99"] <= sweep["trials"]
    assert sweep["smartness"] == pytest.approx(sweep["curve_area"] - sweep["random_order"]["curve_area"])
    db.dispose()


def test_model_info_follows_a_promotion_and_feedback_at_the_next_request(organism):
    settings, app, client = organism
    services_of(app).working.ttl_s = 3600  # only invalidation may refresh it here
    first = client.post("/xgboost/tune", json={**FAST, "experiment_name": "a"}).get_json()["model_version"]
    second = client.post("/xgboost/tune", json={**FAST, "experiment_name": "b",
                                                "custom_tune_config": {"num_samples": 1}}).get_json()["model_version"]
    client.post("/xgboost/promote", json={"version": first, "force": True})
    assert client.get("/xgboost/model_info").get_json()["version"] == first
    promoted = client.post("/xgboost/promote", json={"version": second, "force": True})
    assert promoted.status_code == 200, promoted.get_json()
    info = client.get("/xgboost/model_info").get_json()  # the very next request
    assert info["version"] == second and info["energy"]["previous_version"] == first
    assert info["energy"]["net_delta"] is not None  # the champion's logloss was kept at the promotion
    at = IncidentStore(services_of(app).database).query(event_type="model_promoted")["items"][0]["payload"]["energy"]
    assert at["previous_version"] == first and at["cpu_seconds"] is None  # no job: no cost so far
    assert at["mem_bytes"] > 1000

    data = load_dataset(settings.data_dir)
    rows, labels = data.x_holdout[:40].tolist(), data.y_holdout[:40].astype(int).tolist()
    ids = client.post("/xgboost/predict", json={"instances": rows}).get_json()["prediction_ids"]
    assert client.get("/xgboost/model_info").get_json()["metrics"]["source"] == "holdout"
    assert client.post("/xgboost/feedback", json={"prediction_ids": ids, "labels": labels}).status_code == 200
    info = client.get("/xgboost/model_info").get_json()
    assert info["metrics"]["source"] == "live" and info["energy"]["pair_source"] == "live"
    assert info["energy"]["pair"] == pytest.approx(info["energy"]["pair_logloss"] * info["energy"]["predictions_per_day"])


@pytest.mark.parametrize("query, field", [("limit=0", "limit"), ("limit=101", "limit"), ("offset=-1", "offset"),
                                          ("limit=x", "limit"), ("color=red", "color")])
def test_a_bad_history_page_is_a_400_naming_the_field(organism, query, field):
    _, _, client = organism
    answer = client.get(f"/xgboost/history?{query}")
    assert answer.status_code == 400 and answer.get_json()["field"] == field


# -- baselines, on demand -------------------------------------------------------------------------------------
TPE_SWEEP = {"space_type": "conservative", "config_type": "conservative",
             "custom_tune_config": {"num_samples": 3, "seed": 7, "search_alg": "tpe"}}


def _trial_stats(settings, parent_run_id: str) -> dict:
    """curve_stats of a sweep's trials as MLflow holds them: its child runs' final AUC in start order."""
    client = mlflow_client(settings)
    children = client.search_runs([client.get_run(parent_run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent_run_id}'", order_by=["attributes.start_time ASC"])
    aucs = [run.data.metrics.get("final_auc", run.data.metrics.get("auc")) for run in children]
    assert len(aucs) == 3 and None not in aucs
    return curve_stats(aucs)


def _baseline(client, app, job_id: str, kind: str) -> dict:
    """Ask for a baseline over REST and wait for its job to end: the finished job's row."""
    asked = client.post("/xgboost/evolution/baselines", json={"job_id": job_id, "kind": kind})
    assert asked.status_code == 202, asked.get_json()
    body = asked.get_json()
    assert body["status"] == "accepted" and asked.headers["Location"] == body["status_url"]
    assert body["status_url"].endswith(f"/xgboost/tune/status/{body['job_id']}")
    finished = services_of(app).runner.wait(body["job_id"], timeout=600)
    assert finished["state"] == "succeeded" and finished["kind"] == "tune", finished.get("error")
    return finished


def _sweeps_once(client, check) -> list[dict]:
    """The evolution answer's sweeps once `check(sweeps)` holds (the held answer is dropped as a job's end is
    recorded, by the runner's watcher, a moment after a waiter sees the end)."""
    return _until(lambda: (lambda sweeps: check(sweeps) and sweeps)(client.get("/xgboost/evolution").get_json()["sweeps"]))


def test_a_random_search_baseline_measures_the_sweeps_smartness_and_promotes_nothing(organism):
    settings, app, client = organism
    sweep = client.post("/xgboost/tune", json={**TPE_SWEEP, "experiment_name": "smart"}).get_json()
    job_id, version = sweep["job_id"], sweep["model_version"]
    assert production_version(settings) == version
    before = _sweeps_once(client, lambda s: len(s) == 1)[0]
    assert before["smartness_baseline"] == "random_order" and "random_search" not in before

    baseline = _baseline(client, app, job_id, "random_search")
    assert baseline["trigger"] == f"random_baseline:{job_id}"
    stored = baseline["request"]  # the sweep's request, re-run at random, cold, unpromoted: the same size and seed
    assert stored["custom_tune_config"] == {"num_samples": 3, "seed": 7, "search_alg": "random"}
    assert (stored["promote"], stored["warm_start"], stored["space_type"]) == (False, "none", "conservative")
    assert baseline["result"]["tune_config"]["search_alg"] == "random" and baseline["result"]["total_trials"] == 3
    assert baseline["result"]["promotion"]["status"] == "skipped"
    assert production_version(settings) == version  # the alias did not move
    assert baseline["result"]["model_version"] == version + 1  # registered, never promoted

    [measured] = _sweeps_once(client, lambda s: s and s[0]["smartness_baseline"] == "random_search")
    assert measured["job_id"] == job_id  # the baseline is no sweep of its own
    random = measured["random_search"]
    expected = _trial_stats(settings, baseline["result"]["mlflow"]["parent_run_id"])
    assert random["job_id"] == baseline["id"] and random["curve_area"] == pytest.approx(expected["curve_area"])
    assert (random["trials_to_99"], random["best"]) == (expected["trials_to_99"], pytest.approx(expected["best"]))
    assert measured["smartness"] == pytest.approx(measured["curve_area"] - random["curve_area"])
    assert measured["random_order"]["curve_area"] is not None  # still given, no longer the baseline


def test_a_cold_start_baseline_gives_a_warm_sweep_the_trials_it_saved(organism):
    settings, app, client = organism
    first = client.post("/xgboost/tune", json={**FAST, "experiment_name": "cold"}).get_json()  # production to start from
    warm = client.post("/xgboost/tune", json={**TPE_SWEEP, "experiment_name": "warm", "warm_start": "production"})
    warm = warm.get_json()
    assert warm["warm_start"]["mode"] == "production", warm
    sweeps = _sweeps_once(client, lambda s: len(s) == 2)
    assert sweeps[1]["adaptability_baseline"] == ("same_data_cold" if sweeps[1]["trials_saved"] is not None else None)

    refused = client.post("/xgboost/evolution/baselines", json={"job_id": first["job_id"], "kind": "cold_start"})
    assert refused.status_code == 400 and refused.get_json()["field"] == "kind"  # a cold sweep has no cold twin
    baseline = _baseline(client, app, warm["job_id"], "cold_start")
    assert baseline["trigger"] == f"cold_baseline:{warm['job_id']}"
    assert baseline["request"]["warm_start"] == "none" and baseline["request"]["custom_tune_config"] == {
        "num_samples": 3, "seed": 7, "search_alg": "tpe"}  # the same searcher

    sweeps = _sweeps_once(client, lambda s: len(s) == 2 and s[1]["adaptability_baseline"] == "paired_cold")
    assert [s["job_id"] for s in sweeps] == [first["job_id"], warm["job_id"]]
    cold_stats = _trial_stats(settings, baseline["result"]["mlflow"]["parent_run_id"])
    warm_stats = _trial_stats(settings, warm["mlflow"]["parent_run_id"])
    assert sweeps[1]["cold_start"]["job_id"] == baseline["id"]
    assert sweeps[1]["trials_saved"] == cold_stats["trials_to_99"] - warm_stats["trials_to_99"]
    assert sweeps[1]["smartness_baseline"] == "random_order"  # no random search asked for


def _row(db, job_id: str, **columns) -> str:
    """A finished job row as the runner leaves one (no sweep needed to be refused)."""
    values = {"state": "succeeded", "kind": "tune", "trigger": "api", "trials_total": 2, "finished_at": utcnow(),
              "request": TuneRequest.model_validate(FAST).model_dump(),
              "result": {"tune_config": {"num_samples": 2, "seed": None, "search_alg": "tpe"}}, **columns}
    with db.session() as session:
        session.add(TuningJob(id=job_id, **values))
    return job_id


REFUSED = [
    ({"job_id": "f" * 32, "kind": "random_search"}, None, 404, "job_id"),  # no such job
    ({"job_id": "a" * 32, "kind": "fastest"}, {}, 400, "kind"),
    ({"kind": "random_search"}, None, 400, "job_id"),
    ({"job_id": "a" * 32, "kind": "random_search"}, {"state": "failed", "result": None}, 409, "job_id"),
    ({"job_id": "a" * 32, "kind": "random_search"}, {"kind": "train"}, 400, "job_id"),
    ({"job_id": "a" * 32, "kind": "random_search"}, {"trigger": f"random_baseline:{'b' * 32}"}, 400, "job_id"),
    ({"job_id": "a" * 32, "kind": "cold_start"}, {}, 400, "kind"),  # not warm-started
    ({"job_id": "a" * 32, "kind": "random_search"},
     {"result": {"tune_config": {"num_samples": 2, "seed": None, "search_alg": "random"}}}, 400, "kind"),
    ({"job_id": "a" * 32, "kind": "random_search"},
     {"request": {**TuneRequest.model_validate(FAST).model_dump(), "data_source": "gone.csv"}}, 400, "job_id"),
]


@pytest.mark.parametrize("body, row, status, field", REFUSED)
def test_a_baseline_that_cannot_run_is_refused_naming_the_field(organism, body, row, status, field):
    settings, app, client = organism
    db = services_of(app).database
    if row is not None:
        _row(db, "a" * 32, **row)
    answer = client.post("/xgboost/evolution/baselines", json=body)
    assert answer.status_code == status and answer.get_json()["field"] == field, answer.get_json()
    assert services_of(app).runner.jobs.list()["total"] == (0 if row is None else 1)  # nothing was queued
