"""`/xgboost` over REST with real Ray, MLflow and XGBoost: sweeps (sync and as jobs), cancel, train, promote,
and the flashbulb incidents each of them leaves."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import xgboost as xgb

from _metrics import grown, scrape
from _serving import serve_app, stop_app
from _tuning import (FAST, FINISHED, LONG, all_runs, job_rows, job_status, model_versions, mlflow_client,
                     production_version, sweep_runs, wait_for, wait_job)
from seedcore import names
from seedcore.api import create_app
from seedcore.tuning.params_check import MAX_DRY_RUNS
from seedcore.services import services_of
from tests.test_datasets_checks import TUNE as DATA_TUNE, _write as write_data, frame as data_frame

pytestmark = pytest.mark.integration

TOKEN = "tuning-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GUIDE_PARAMS = ("eta", "max_depth", "subsample", "colsample_bytree", "lambda", "alpha")
CONSERVATIVE_RANGES = {"eta": (0.05, 0.15), "max_depth": (4, 7), "subsample": (0.7, 0.9),
                       "colsample_bytree": (0.7, 0.9), "lambda": (1.0, 3.0), "alpha": (0.0, 2.0)}


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def incidents(client, event_type: str) -> list[dict]:
    response = client.get(f"/mfb/incidents?event_type={event_type}")
    assert response.status_code == 200
    return response.get_json()["items"]


SWEEP_SECONDS, TRIALS = "seedcore_sweep_duration_seconds", "seedcore_trials_total"
OUTCOMES = ("completed", "pruned", "errored", "killed")


def assert_one_sweep_metered(before: dict, after: dict, status: str, trials: dict, longest: float) -> None:
    """Between two scrapes of GET /metrics exactly one sweep ended, so (`status`), within `longest` seconds,
    its trials ending as `trials` says (outcome -> count)."""
    assert grown(before, after, f"{SWEEP_SECONDS}_count", status=status) == 1
    assert grown(before, after, f"{SWEEP_SECONDS}_bucket", status=status, le="+Inf") == 1
    assert 0 < grown(before, after, f"{SWEEP_SECONDS}_sum", status=status) <= longest
    for other in {"succeeded", "failed", "cancelled"} - {status}:
        assert grown(before, after, f"{SWEEP_SECONDS}_count", status=other) == 0, other
    assert {o: grown(before, after, TRIALS, outcome=o) for o in OUTCOMES} == {o: trials.get(o, 0) for o in OUTCOMES}


@pytest.fixture
def token_app(migrated_settings):
    app = create_app(migrated_settings.replace(api_token=TOKEN))
    app.config["TESTING"] = True
    yield app
    services_of(app).stop()


# -- the guide's curls ------------------------------------------------------------------------

def test_guide_quick_start_curl_tunes_registers_promotes_and_remembers(client, migrated_settings, ray_session):
    """The guide's first curl, as written: the conservative space, 5 trials, the guide's response."""
    before, started = scrape(client), time.monotonic()
    response = client.post("/xgboost/tune", headers={"Content-Type": "application/json"},
                           data='{\n    "space_type": "conservative",\n    "config_type": "conservative", \n'
                                '    "experiment_name": "my_first_tuning"\n  }')
    assert response.status_code == 200, response.get_data(as_text=True)
    took = time.monotonic() - started
    body = response.get_json()

    # the guide's fields
    assert body["status"] == "success" and body["experiment_name"] == "my_first_tuning"
    best = body["best_trial"]
    assert isinstance(best["trial_id"], str) and best["trial_id"]
    assert 0.5 < best["auc"] <= 1.0 and best["logloss"] > 0 and best["training_time"] > 0
    for param, (low, high) in CONSERVATIVE_RANGES.items():
        assert low <= best["config"][param] <= high, (param, best["config"][param])
    assert best["config"]["num_boost_round"] == 20
    promotion = body["promotion"]
    assert promotion["status"] == "success"
    assert promotion["blessed_path"] == str(migrated_settings.blessed_dir / names.BLESSED_MODEL_FILE)
    assert promotion["metadata_path"] == str(migrated_settings.blessed_dir / names.METADATA_FILE)
    assert Path(promotion["source_path"]).exists()
    assert body["total_trials"] == 5
    assert Path(body["experiment_path"]).is_dir()
    assert migrated_settings.ray_results_dir in Path(body["experiment_path"]).parents
    # ours
    assert body["model_version"] == 1 and 0.5 < body["holdout"]["auc"] <= 1.0
    assert body["mlflow"]["tracking_uri"] == migrated_settings.tracking_uri

    # MLflow: one parent, five children, all ended; the best trial is the best child by validation AUC
    parent, children = sweep_runs(migrated_settings, body["mlflow"]["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[names.TAG_JOB_ID] == body["job_id"]
    assert len(children) == 5 and all(run.info.status == "FINISHED" for run in children)
    finals = [run.data.metrics["final_auc"] for run in children if "final_auc" in run.data.metrics]
    assert best["auc"] == max(finals)
    assert best["trial_id"] in {run.data.tags[names.TAG_TRIAL_ID] for run in children}

    # the registry and the blessed files
    assert production_version(migrated_settings) == 1
    mv = mlflow_client(migrated_settings).get_model_version(migrated_settings.model_name, "1")
    assert mv.current_stage == names.PRODUCTION_STAGE
    booster = xgb.Booster()
    booster.load_model(bytearray(Path(promotion["blessed_path"]).read_bytes()))  # UBJ bytes
    assert booster.num_features() == 10
    assert json.loads(Path(promotion["metadata_path"]).read_text())["version"] == 1

    # the job row behind the synchronous call
    job = job_status(client, body["job_id"])
    assert job["state"] == "succeeded"
    assert job["progress"] == {"trials_done": 5, "trials_total": 5, "best_auc": best["auc"]}
    assert job["result"]["best_trial"] == best and job["result"]["model_version"] == 1

    # flashbulb memory: tuning completed (the guide's payload) and model promoted
    (completed,) = incidents(client, "model_tuning_completed")
    payload = completed["payload"]
    assert completed["outcome"] == "success" and completed["experiment_name"] == "my_first_tuning"
    assert payload["event_type"] == "model_tuning_completed" and payload["outcome"] == "success"
    assert payload["experiment_name"] == "my_first_tuning"
    assert payload["best_model_path"] == promotion["blessed_path"]
    assert payload["metric_achieved"] == {"auc": best["auc"], "logloss": best["logloss"]}
    assert payload["best_params"] == best["config"]
    assert 0 <= payload["salience"] <= 1 and payload["salience"] == completed["salience"]
    assert isinstance(payload["timestamp"], float)
    (promoted,) = incidents(client, "model_promoted")
    assert promoted["model_version"] == "1" and promoted["payload"]["blessed_path"] == promotion["blessed_path"]

    # Prometheus: the sweep's wall time under `succeeded`, its five trials by how each ended
    assert sum(body["trials"][o] for o in OUTCOMES) == 5 and body["trials"]["completed"] >= 1
    assert_one_sweep_metered(before, scrape(client), "succeeded", body["trials"], took)


def test_guide_curl_without_content_type(client, migrated_settings, ray_session):
    """`curl -d '{...}'` with no -H sends application/x-www-form-urlencoded; the JSON body still counts."""
    response = client.post("/xgboost/tune", data='{"space_type": "conservative", "config_type": "conservative"}',
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["status"] == "success" and body["experiment_name"] == "xgboost_tuning"
    assert body["total_trials"] == 5
    job = job_status(client, body["job_id"])
    assert job["request"]["space_type"] == "conservative" and job["request"]["config_type"] == "conservative"
    assert body["promotion"]["status"] == "success" and production_version(migrated_settings) == 1


def test_guide_curl_with_only_an_experiment_name_runs_the_default_space(token_app, migrated_settings, ray_session):
    """`-d '{"experiment_name": "production_model_v2_2024_01"}'` asks for the default sweep (50 trials of 200
    rounds). It is accepted as written; cancelling it answers the waiting caller with 409 and keeps nothing."""
    data = '{"experiment_name": "production_model_v2_2024_01"}'
    form = "application/x-www-form-urlencoded"
    client = token_app.test_client()
    assert client.post("/xgboost/tune", data=data, content_type=form).status_code == 401
    assert job_rows(migrated_settings) == []

    answer: dict = {}
    caller = threading.Thread(daemon=True, target=lambda: answer.update(
        response=token_app.test_client().post("/xgboost/tune", data=data, content_type=form, headers=AUTH)))
    caller.start()
    job = wait_for(lambda: (job_rows(migrated_settings) or [None])[0], 60, "the job row")
    assert job["request"]["space_type"] == "default" and job["request"]["config_type"] == "default"
    assert job["request"]["custom_search_space"] is None and job["request"]["custom_tune_config"] is None
    assert job["experiment_name"] == "production_model_v2_2024_01" and job["trials_total"] == 50

    assert client.post(f"/xgboost/tune/{job['id']}/cancel").status_code == 401
    assert client.post(f"/xgboost/tune/{job['id']}/cancel", headers={"Authorization": "Bearer nope"}).status_code == 403
    cancel = client.post(f"/xgboost/tune/{job['id']}/cancel", headers=AUTH)
    assert cancel.status_code == 202 and cancel.get_json()["job_id"] == job["id"]
    caller.join(300)
    assert not caller.is_alive()
    response = answer["response"]
    assert response.status_code == 409, response.get_data(as_text=True)
    assert response.get_json()["status"] == "error" and "cancelled" in response.get_json()["error"]

    final = job_status(client, job["id"])
    assert final["state"] == "cancelled"
    assert model_versions(migrated_settings) == [] and production_version(migrated_settings) is None
    assert not (migrated_settings.blessed_dir / names.BLESSED_MODEL_FILE).exists()
    assert [run.info.run_id for run in all_runs(migrated_settings) if run.info.status == "RUNNING"] == []


def test_a_refresh_that_swaps_in_a_sweeps_model_is_remembered(client, migrated_settings, ray_session):
    """A serving replica (`seedcore serve`, polling too rarely to notice) takes the sweep's model on
    POST /xgboost/refresh_model: one model_refreshed incident. A refresh that changes nothing records nothing."""
    replica = serve_app(migrated_settings.replace(poll_interval_s=600))  # started before anything was promoted
    try:
        body = client.post("/xgboost/tune", json={**FAST, "experiment_name": "to_serve"}).get_json()
        assert body["status"] == "success" and body["promotion"]["status"] == "success"
        version = body["model_version"]
        # the server that promoted swapped as it promoted: its refresh finds nothing to do
        here = client.post("/xgboost/refresh_model").get_json()
        assert here["changed"] is False and here["model_version"] == version
        assert incidents(client, "model_refreshed") == []

        replica_client = replica.test_client()
        assert replica_client.post("/xgboost/predict", json={"features": [0.1] * 10}).status_code == 503
        swapped = replica_client.post("/xgboost/refresh_model").get_json()
        assert swapped["changed"] is True and swapped["model_version"] == version
        assert swapped["previous_version"] is None
        (refreshed,) = incidents(client, "model_refreshed")
        assert refreshed["outcome"] == "success" and refreshed["model_version"] == str(version)
        assert refreshed["salience"] == 0.2 and refreshed["experiment_name"] is None
        payload = refreshed["payload"]
        assert (payload["model_name"], payload["model_version"], payload["previous_version"], payload["pid"]) == (
            migrated_settings.model_name, version, None, os.getpid())

        again = replica_client.post("/xgboost/refresh_model").get_json()
        assert again["changed"] is False and again["model_version"] == version
        assert [i["id"] for i in incidents(client, "model_refreshed")] == [refreshed["id"]]
        assert replica_client.post("/xgboost/predict", json={"features": [0.1] * 10}).get_json()["model_version"] \
            == version
    finally:
        stop_app(replica)


# -- jobs: submit, status, list, order, cancel --------------------------------------------------

def test_submitted_sweeps_run_one_at_a_time_in_order(client, migrated_settings, ray_session):
    submitted = []
    for name, trials in (("first", 3), ("second", 2)):
        response = client.post("/xgboost/tune/submit", json={**FAST, "experiment_name": name,
                                                             "custom_tune_config": {"num_samples": trials}})
        assert response.status_code == 202, response.get_data(as_text=True)
        body = response.get_json()
        assert body["status"] == "accepted" and body["state"] == "queued"  # answered at once, not after the sweep
        assert body["status_url"] == f"/xgboost/tune/status/{body['job_id']}"
        assert body["progress"] == {"trials_done": 0, "trials_total": trials, "best_auc": None}
        submitted.append(body["job_id"])
    first_id, second_id = submitted

    seen = set()

    def both_finished():
        first, second = job_status(client, first_id), job_status(client, second_id)
        seen.add((first["state"], second["state"]))
        assert second["state"] in ("queued", *FINISHED) or first["state"] in FINISHED, (first, second)
        assert first["progress"]["trials_done"] <= first["progress"]["trials_total"] == 3
        return (first, second) if first["state"] in FINISHED and second["state"] in FINISHED else None

    first, second = wait_for(both_finished, 600, "both sweeps to finish", interval=0.05)
    assert ("running", "queued") in seen
    assert first["state"] == second["state"] == "succeeded", (first["error"], second["error"])
    assert _when(second["started_at"]) >= _when(first["finished_at"])
    for job, trials in ((first, 3), (second, 2)):
        best = job["result"]["best_trial"]
        assert job["progress"] == {"trials_done": trials, "trials_total": trials, "best_auc": best["auc"]}
        assert job["result"]["total_trials"] == trials and job["result"]["job_id"] == job["job_id"]
        assert job["mlflow_parent_run_id"] == job["result"]["mlflow"]["parent_run_id"]
    assert second["result"]["model_version"] == 2
    assert second["result"]["promotion"]["status"] in ("success", "rejected")
    assert second["result"]["promotion"]["champion"] is not None  # judged against the first sweep's model

    listing = client.get("/xgboost/tune/jobs").get_json()
    assert [job["job_id"] for job in listing["items"]] == [second_id, first_id] and listing["total"] == 2
    page = client.get("/xgboost/tune/jobs?limit=1&offset=1").get_json()
    assert [job["job_id"] for job in page["items"]] == [first_id] and page["total"] == 2
    assert client.get("/xgboost/tune/jobs?state=succeeded").get_json()["total"] == 2
    assert client.get("/xgboost/tune/jobs?state=queued").get_json()["total"] == 0

    assert sorted(i["experiment_name"] for i in incidents(client, "model_tuning_completed")) == ["first", "second"]
    decisions = incidents(client, "model_promoted") + incidents(client, "model_promotion_rejected")
    assert sorted(i["model_version"] for i in decisions) == ["1", "2"]


def test_cancel_stops_a_running_sweep_kills_its_runs_and_promotes_nothing(app, client, migrated_settings,
                                                                          ray_session):
    import ray

    before, started = scrape(client), time.monotonic()
    running = client.post("/xgboost/tune/submit", json={**LONG, "experiment_name": "to_cancel"}).get_json()
    waiting = client.post("/xgboost/tune/submit", json={**FAST, "experiment_name": "never_runs"}).get_json()

    # a queued job is cancelled at once and never starts
    response = client.post(f"/xgboost/tune/{waiting['job_id']}/cancel")
    assert response.status_code == 202 and response.get_json()["state"] == "cancelled"

    def a_trial_is_running():
        status = job_status(client, running["job_id"])
        if status["state"] != "running" or not status["mlflow_parent_run_id"]:
            return None
        _, children = sweep_runs(migrated_settings, status["mlflow_parent_run_id"])
        return status if any(run.info.status == "RUNNING" for run in children) else None

    status = wait_for(a_trial_is_running, 300, "a trial of the long sweep to run")

    # a synchronous caller queued behind it gets its answer when its job is cancelled
    answer: dict = {}
    caller = threading.Thread(daemon=True, target=lambda: answer.update(response=app.test_client().post(
        "/xgboost/tune", json={**FAST, "experiment_name": "sync_waiting"})))
    caller.start()
    queued = wait_for(lambda: [job for job in job_rows(migrated_settings)
                               if job["experiment_name"] == "sync_waiting"], 60, "the synchronous job row")[0]
    assert queued["state"] == "queued"
    assert client.post(f"/xgboost/tune/{queued['id']}/cancel").get_json()["state"] == "cancelled"
    caller.join(60)
    assert not caller.is_alive(), "POST /xgboost/tune still waits for a job that was cancelled in the queue"
    assert answer["response"].status_code == 409 and "cancelled" in answer["response"].get_json()["error"]

    response = client.post(f"/xgboost/tune/{running['job_id']}/cancel")
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json()["state"] in ("running", "cancelled")

    final = wait_job(client, running["job_id"], timeout=300)
    assert final["state"] == "cancelled" and "cancelled" in final["error"]
    assert final["progress"]["trials_done"] < 50
    parent, children = sweep_runs(migrated_settings, status["mlflow_parent_run_id"])
    assert parent.info.status == "KILLED"
    assert children and all(run.info.status != "RUNNING" for run in children)
    assert any(run.info.status == "KILLED" for run in children)
    assert model_versions(migrated_settings) == []
    assert not (migrated_settings.blessed_dir / names.BLESSED_MODEL_FILE).exists()
    (failed,) = incidents(client, "model_tuning_failed")
    assert failed["outcome"] == "cancelled" and failed["payload"]["job_id"] == running["job_id"]
    assert incidents(client, "model_tuning_completed") == []
    # Prometheus: one cancelled sweep (the two cancelled in the queue never ran), its trials as MLflow says
    ended = Counter(run.data.tags["seedcore.outcome"] for run in children)
    assert ended["killed"] >= 1
    assert_one_sweep_metered(before, scrape(client), "cancelled", ended, time.monotonic() - started)

    # the trials stopped: their CPUs come back to the cluster
    free = ray_session.free()  # all but those the run's Ray holds back
    wait_for(lambda: ray.available_resources().get("CPU", 0) == free, 120,
             "the cancelled trials to release their CPUs", interval=0.5)
    # the jobs cancelled in the queue stayed cancelled; nothing ran for them
    for job_id in (waiting["job_id"], queued["id"]):
        never = job_status(client, job_id)
        assert never["state"] == "cancelled" and never["started_at"] is None and never["mlflow_parent_run_id"] is None
    assert {run.data.tags.get(names.TAG_JOB_ID) for run in all_runs(migrated_settings)} <= {running["job_id"], None}
    # a finished job cannot be cancelled again
    again = client.post(f"/xgboost/tune/{running['job_id']}/cancel")
    assert again.status_code == 409 and again.get_json()["field"] == "job_id"


def test_a_sweep_whose_trials_all_fail_is_a_failed_job_and_remembered(client, migrated_settings, ray_session):
    """XGBoost refuses these monotone constraints (15 for 10 features) when the trial trains. Alone they are a
    400 from the dry run (params_check); here they are middle values of a choice the dry run never reaches:
    a first choice of MAX_DRY_RUNS valid max_bin values uses up its budget, and the corners fit."""
    too_many, fits = "(" + ",".join(["1"] * 15) + ")", "(1,-1)"
    space = {"eta": 0.1, "max_depth": 3, "num_boost_round": 5,
             "max_bin": {"type": "choice", "values": list(range(200, 200 + MAX_DRY_RUNS))},
             "monotone_constraints": {"type": "choice", "values": [fits] + [too_many] * 40 + [fits]}}
    before, started = scrape(client), time.monotonic()
    response = client.post("/xgboost/tune/submit", json={"config_type": "conservative", "experiment_name": "doomed",
                                                         "custom_search_space": space,
                                                         "custom_tune_config": {"num_samples": 2, "seed": 3}})
    assert response.status_code == 202
    job = wait_job(client, response.get_json()["job_id"])
    assert_one_sweep_metered(before, scrape(client), "failed", {"errored": 2}, time.monotonic() - started)
    assert job["state"] == "failed" and job["result"] is None
    assert "no trial finished" in job["error"] and "monotone" in job["error"]  # says why, not just "failed"
    assert job["progress"]["trials_done"] == 2 and job["progress"]["best_auc"] is None
    parent, children = sweep_runs(migrated_settings, job["mlflow_parent_run_id"])
    assert parent.info.status == "FAILED"
    assert len(children) == 2 and all(run.info.status == "FAILED" for run in children)
    assert model_versions(migrated_settings) == []
    (failed,) = incidents(client, "model_tuning_failed")
    assert failed["outcome"] == "failure" and failed["experiment_name"] == "doomed"
    assert failed["payload"]["error"] == job["error"] and failed["payload"]["job_id"] == job["job_id"]
    assert incidents(client, "model_tuning_completed") == []


# -- train and promote ---------------------------------------------------------------------------

GOOD_PARAMS = {"eta": 0.2, "max_depth": 4, "num_boost_round": 40}
WEAK_PARAMS = {"eta": 0.01, "max_depth": 1, "num_boost_round": 1}


def _blessed_bytes(settings) -> bytes:
    return (settings.blessed_dir / names.BLESSED_MODEL_FILE).read_bytes()


def test_train_registers_without_promoting_and_promote_goes_through_the_champion_gate(client, migrated_settings):
    settings = migrated_settings
    trained = client.post("/xgboost/train", json={"params": GOOD_PARAMS, "experiment_name": "manual"})
    assert trained.status_code == 200, trained.get_data(as_text=True)
    good = trained.get_json()
    assert good["status"] == "success" and good["model_version"] == 1
    assert good["promotion"]["status"] == "skipped"
    assert production_version(settings) is None and not settings.blessed_dir.joinpath(names.BLESSED_MODEL_FILE).exists()
    run = mlflow_client(settings).get_run(good["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["max_depth"] == "4"
    history = mlflow_client(settings).get_metric_history(run.info.run_id, names.AUC)
    assert sorted(m.step for m in history) == list(range(1, 41))

    promoted = client.post("/xgboost/promote", json={"version": 1})
    assert promoted.status_code == 200, promoted.get_data(as_text=True)
    first = promoted.get_json()
    assert first["status"] == "success" and first["version"] == 1 and first["champion"] is None
    assert production_version(settings) == 1
    assert first["blessed_path"] == str(settings.blessed_dir / names.BLESSED_MODEL_FILE)
    champion_bytes = _blessed_bytes(settings)

    weak = client.post("/xgboost/train", json={"params": WEAK_PARAMS, "experiment_name": "manual"}).get_json()
    assert weak["model_version"] == 2 and weak["promotion"]["status"] == "skipped"
    rejected = client.post("/xgboost/promote", json={"version": 2})
    assert rejected.status_code == 200, rejected.get_data(as_text=True)
    decision = rejected.get_json()
    assert decision["status"] == "rejected" and decision["version"] == 2
    challenger, champion = decision["challenger"]["auc"], decision["champion"]["auc"]
    assert challenger < champion
    assert f"{challenger:.6f}" in decision["reason"] and f"{champion:.6f}" in decision["reason"]
    assert production_version(settings) == 1 and _blessed_bytes(settings) == champion_bytes

    forced = client.post("/xgboost/promote", json={"version": 2, "force": True}).get_json()
    assert forced["status"] == "success" and forced["reason"] == "forced"
    assert production_version(settings) == 2 and _blessed_bytes(settings) != champion_bytes
    stages = {int(mv.version): mv.current_stage for mv in model_versions(settings)}
    assert stages == {1: names.ARCHIVED_STAGE, 2: names.PRODUCTION_STAGE}

    # train with promote=true: through the same gate, against version 2
    again = client.post("/xgboost/train", json={"params": GOOD_PARAMS, "promote": True}).get_json()
    assert again["model_version"] == 3 and again["promotion"]["status"] == "success"
    assert again["promotion"]["champion"]["auc"] == pytest.approx(challenger)
    assert production_version(settings) == 3

    promoted_events = incidents(client, "model_promoted")
    assert sorted(i["model_version"] for i in promoted_events) == ["1", "2", "3"]
    (rejection,) = incidents(client, "model_promotion_rejected")
    assert rejection["outcome"] == "rejected" and rejection["model_version"] == "2"
    assert rejection["payload"]["challenger"]["auc"] == challenger
    assert rejection["payload"]["champion"]["auc"] == champion


def test_train_reads_a_csv_inside_the_data_dir(client, migrated_settings):
    """data_source inside the data dir is accepted, relative or absolute."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    frame["label"] = (frame["a"] + frame["b"] > 0).astype(int)
    (migrated_settings.data_dir / "sub").mkdir()
    frame.to_csv(migrated_settings.data_dir / "sub" / "mine.csv", index=False)
    for source in ("sub/mine.csv", str(migrated_settings.data_dir / "sub" / "mine.csv")):
        response = client.post("/xgboost/train", json={"params": {"max_depth": 2, "num_boost_round": 5},
                                                       "data_source": source, "label_column": "label",
                                                       "feature_columns": ["a", "b", "c"]})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["dataset"]["feature_names"] == ["a", "b", "c"]
        assert response.get_json()["dataset"]["source"] == str(migrated_settings.data_dir / "sub" / "mine.csv")


# -- accepted (a job queued, then cancelled): names and data the refusal tables must not refuse --------------
@pytest.mark.parametrize("name", ["x" * 256, "exp#frag", "team/churn model", "ünïcode ✓", "a..b"])
def test_a_legitimate_odd_name_is_accepted(client, ray_session, name):
    response = client.post("/xgboost/tune/submit", json={"experiment_name": name, "space_type": "conservative",
                                                         "config_type": "conservative",
                                                         "custom_tune_config": {"num_samples": 1}})
    assert response.status_code == 202, response.get_data(as_text=True)
    client.post(f"/xgboost/tune/{response.get_json()['job_id']}/cancel")


def test_submit_accepts_a_good_file(client, migrated_settings, ray_session):
    source = write_data(migrated_settings, "d.parquet", data_frame())
    response = client.post("/xgboost/tune/submit", json={**DATA_TUNE, "data_source": source, "label_column": "y",
                                                         "feature_columns": ["a", "c"]})
    assert response.status_code == 202, response.get_data(as_text=True)
    client.post(f"/xgboost/tune/{response.get_json()['job_id']}/cancel")
