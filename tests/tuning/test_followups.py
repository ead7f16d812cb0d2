"""A sweep answers before its follow-ups (pictures, description, drift reference; a multi-objective sweep's
Pareto front); they then end and their states show in the job's row. What a dead process left pending is finished, or marked failed, by the next
runner to start. Real runner, Ray, MLflow and SQL; tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import select

from _pg import ON_BOTH_BACKENDS
from _tuning import FAST, mlflow_client, wait_followups
from seedcore.promotion import plots
from seedcore.db.database import Database
from seedcore.db.tables_flywheel import DriftReference
from seedcore.jobs.store import JOB_SUCCEEDED, JobStore
from seedcore.promotion.drift_reference import load_reference
from seedcore.process_identity import ProcessIdentity
from seedcore.promotion.registry import Registry
from seedcore.request_models import TrainRequest, TuneRequest
from seedcore.db.tables_jobs import KIND_TRAIN, KIND_TUNE
from seedcore.jobs.runner import JobRunner
from seedcore.promotion import followups
from seedcore.tuning.single import train_model
from seedcore.tuning.sweep import run_sweep

pytestmark = pytest.mark.integration

# Two objectives: the sweep's answer carries its Pareto front, whose table and picture are a follow-up.
MULTI = {**FAST, "objectives": [{"metric": "auc", "mode": "max"}, {"metric": "model_bytes", "mode": "min"}]}
MULTI_STEPS = (*followups.STEPS, followups.PARETO_FRONT)


def _reference_created(db: Database, settings, version: int) -> datetime:
    with db.session() as session:
        return session.scalar(select(DriftReference.created_at).where(
            DriftReference.model_name == settings.model_name, DriftReference.model_version == version))


def _parent_plot_times(settings, parent_run_id: str) -> list[float]:
    """When each of the sweep's pictures was written (the local artifact store's file times)."""
    root = Path(urlparse(mlflow_client(settings).get_run(parent_run_id).info.artifact_uri).path) / plots.PLOTS_DIR
    return [(root / name).stat().st_mtime for name in plots.SWEEP_PLOTS]


def _front_times(settings, parent_run_id: str) -> dict[str, float]:
    """When the Pareto front's table and picture were written on the sweep's parent run (file times)."""
    root = Path(urlparse(mlflow_client(settings).get_run(parent_run_id).info.artifact_uri).path)
    return {name: (root / name).stat().st_mtime for name in (plots.FRONT_TABLE, plots.FRONT_PLOT)
            if (root / name).exists()}


def _model_plots(settings, version: int) -> set[str]:
    mv = Registry(settings).get_version(version)
    listed = mlflow_client(settings).list_logged_model_artifacts(mv.source.removeprefix("models:/"), plots.PLOTS_DIR)
    return {Path(f.path).name for f in listed}


def test_the_answer_comes_first_then_the_followups_end_and_show_in_the_job(migrated_settings, ray_session):
    settings = migrated_settings
    db = Database(settings.database_url)
    runner = JobRunner(settings, db, poll_s=0.2).start()
    try:
        job = runner.submit(TuneRequest(**MULTI, experiment_name="followups", promote=False))
        answered = runner.wait(job["id"], timeout=300)
        assert answered["state"] == JOB_SUCCEEDED and set(answered["result"]["followups"]) == set(MULTI_STEPS)
        assert answered["result"]["pareto_front"]  # the answer's own front
        ended = wait_followups(lambda: runner.jobs.get(job["id"]))
    finally:
        runner.stop(timeout=30)
    result, finished = ended["result"], datetime.fromisoformat(ended["finished_at"])
    assert result["followups"] == dict.fromkeys(MULTI_STEPS, followups.DONE)
    assert {k: v for k, v in result.items() if k != "followups"} == \
        {k: v for k, v in answered["result"].items() if k != "followups"}  # the answer itself is untouched
    version = result["model_version"]
    # Each follow-up's work is there, and was done after the job's answer was recorded.
    assert _reference_created(db, settings, version) >= finished
    assert load_reference(db, settings.model_name, version)["rows"] > 0
    mv = Registry(settings).get_version(version)
    assert "Champion gate: not decided yet." in mv.description and "experiment `followups`" in mv.description
    assert mv.last_updated_timestamp / 1000 >= finished.timestamp()
    assert min(_parent_plot_times(settings, result["mlflow"]["parent_run_id"])) >= finished.timestamp()
    front = _front_times(settings, result["mlflow"]["parent_run_id"])
    assert len(front) == 2 and min(front.values()) >= finished.timestamp()
    assert _model_plots(settings, version) == set(plots.MODEL_PLOTS)
    db.dispose()


def _left_by_a_dead_process(settings, db: Database, request, kind: str, result: dict) -> str:
    """A job row as a process that died right after recording its answer leaves it: succeeded, its follow-ups
    pending, its owner a pid that no longer runs."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    me = ProcessIdentity.current()
    jobs = JobStore(db)
    job = jobs.create(request.model_dump(), request.experiment_name, 1, kind=kind,
                      owner=(int(gone.stdout), me.host, me.start))
    jobs.finish(job["id"], JOB_SUCCEEDED, result={**result, "job_id": job["id"]})
    return job["id"]


def test_a_restart_finishes_the_followups_a_dead_process_left_pending(migrated_settings, ray_session):
    settings = migrated_settings
    db = Database(settings.database_url)
    request = TuneRequest(**MULTI, experiment_name="left_pending", promote=False)
    held = []
    result = run_sweep(settings, request, hold_followups=held.append)  # answered; its follow-ups never start
    assert result["followups"] == dict.fromkeys(MULTI_STEPS, followups.PENDING) and len(held) == 1
    assert not held[0].ended
    version, parent = result["model_version"], result["mlflow"]["parent_run_id"]
    assert load_reference(db, settings.model_name, version) is None and _model_plots(settings, version) == set()
    assert _front_times(settings, parent) == {}  # the answer did not wait for the front's table and picture
    job_id = _left_by_a_dead_process(settings, db, request, KIND_TUNE, result)

    runner = JobRunner(settings, db, poll_s=0.2).start()  # finishes them in a thread of its own
    try:
        ended = wait_followups(lambda: runner.jobs.get(job_id))
    finally:
        runner.stop(timeout=30)
    assert ended["result"]["followups"] == dict.fromkeys(MULTI_STEPS, followups.DONE)
    assert load_reference(db, settings.model_name, version) is not None
    assert "Champion gate: not decided yet." in Registry(settings).get_version(version).description
    assert _model_plots(settings, version) == set(plots.MODEL_PLOTS)
    assert len(_parent_plot_times(settings, parent)) == len(plots.SWEEP_PLOTS)
    assert len(_front_times(settings, parent)) == 2  # from the front the job's answer kept
    db.dispose()


@ON_BOTH_BACKENDS
def test_followups_that_cannot_be_finished_are_marked_failed(migrated_settings):
    settings = migrated_settings
    db = Database(settings.database_url)
    request = TrainRequest(params={"eta": 0.3, "max_depth": 2, "num_boost_round": 3}, experiment_name="gone_version")
    held = []
    result = train_model(settings, request.params, experiment_name=request.experiment_name,
                         hold_followups=held.append)
    job_id = _left_by_a_dead_process(settings, db, request, KIND_TRAIN, result)
    registry = Registry(settings)
    registry.client.delete_model_version(settings.model_name, str(result["model_version"]))  # nothing to finish from

    runner = JobRunner(settings, db, poll_s=0.2).start()
    try:
        ended = wait_followups(lambda: runner.jobs.get(job_id))
    finally:
        runner.stop(timeout=30)
    assert ended["state"] == JOB_SUCCEEDED  # the job's answer stands
    assert ended["result"]["followups"] == dict.fromkeys(followups.STEPS, followups.FAILED)
    assert runner.resume_followups() == []  # nothing is left pending: a later start does nothing again
    db.dispose()


# A script that trains and ends at once: its last atexit hook (registered first, so it runs after the
# follow-ups' own) writes what the follow-ups were when the interpreter went on to finalize.
_ENDS_AT_ONCE = """
import atexit, json, sys

def report():
    from seedcore.promotion import followups
    with open(sys.argv[1], "w") as out:
        json.dump([{"ended": f.ended, "states": f.describe()} for f in followups._RECENT.values()], out)

atexit.register(report)
from seedcore.config import Settings
from seedcore.tuning.single import train_model

result = train_model(Settings.from_env(), {"eta": 0.3, "max_depth": 2, "num_boost_round": 3}, experiment_name="ends")
print(result["model_version"])
"""


def test_a_script_that_ends_during_its_followups_finishes_the_step_under_way_and_leaves_the_rest_pending(
        migrated_settings, tmp_path):
    """Past `stop_timeout_s` (its least, 0.5 s), no new step begins, but the one under way ends before Python
    finalizes: no thread is left drawing or writing then (that crashed a profiled CLI sweep with SIGSEGV)."""
    settings, report = migrated_settings, tmp_path / "at_exit.json"
    env = {**os.environ, "SEEDCORE_DATA_DIR": str(settings.data_dir), "SEEDCORE_MLRUNS_DIR": str(settings.mlruns_dir),
           "SEEDCORE_DATABASE_URL": settings.database_url, "SEEDCORE_STOP_TIMEOUT_S": "0.5"}
    done = subprocess.run([sys.executable, "-c", _ENDS_AT_ONCE, str(report)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (left,) = json.loads(report.read_text())
    assert left["ended"], left  # no follow-up thread outlived the atexit hooks
    states = [left["states"][step] for step in followups.ORDER if step in left["states"]]
    assert set(states) <= {followups.DONE, followups.PENDING}, states
    assert states == sorted(states, key=lambda s: s == followups.PENDING)  # done ones first, in their order
    drawn = _model_plots(settings, int(done.stdout.split()[-1]))
    assert drawn == (set(plots.MODEL_PLOTS) if left["states"][followups.PLOTS] == followups.DONE else set())
